"""What every subcommand shares: help that shows defaults, and checked argument types."""

from __future__ import annotations

import argparse
from collections.abc import Callable


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Append ``(default: X)`` to every option's help unless the help already says it.

    Options whose default is not a plain value (None, a list) state it in their
    help text in words; required options have none.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        if "(default" in help_text or action.required:
            return help_text
        return super()._get_help_string(action)


def add_command(
    commands: argparse._SubParsersAction, name: str, summary: str, description: str | None = None
) -> argparse.ArgumentParser:
    """Add a subcommand whose ``--help`` shows every option's default.

    Args:
        commands: The subparsers object of the main parser.
        name: The command's name.
        summary: One line for the main ``--help``.
        description: A longer text for the command's own ``--help`` (default: the summary).
    """
    return commands.add_parser(
        name, help=summary, description=description or summary, formatter_class=HelpFormatter
    )


def int_at_least(low: int) -> Callable[[str], int]:
    """Return an argparse type that accepts integers >= low."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {low}, got {text!r}"
            ) from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    return parse
