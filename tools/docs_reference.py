"""Write the docs' reference parts that the code generates: the OpenAPI document and the settings.

Usage: .venv/bin/python tools/docs_reference.py [--check]

docs/api/openapi.json is the document the app serves at /openapi.json (the
site's API reference renders the committed file, so it builds without the
app); the table between the settings markers of docs/configuration.md is
``settings_table()``. With ``--check`` it writes nothing and exits 1 when a
committed file differs from what the code generates now.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from any folder
    sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from recsys.config import settings_table  # noqa: E402

OPENAPI_JSON = ROOT / "docs" / "api" / "openapi.json"
CONFIGURATION = ROOT / "docs" / "configuration.md"
SETTINGS_START, SETTINGS_END = "<!-- settings:start -->", "<!-- settings:end -->"
# The settings the document depends on, at their defaults, whatever the environment says.
DOCUMENTED_CONFIG: dict[str, Any] = {"METRICS_OPEN": True}


def openapi_text() -> str:
    """Return the document the app serves at /openapi.json, as the committed file's text."""
    response = create_app(DOCUMENTED_CONFIG).test_client().get("/openapi.json")
    return json.dumps(response.get_json(), indent=2, ensure_ascii=False) + "\n"


def configuration_text(page: str) -> str:
    """Return the configuration page with the settings table generated now."""
    start, end = page.index(SETTINGS_START) + len(SETTINGS_START), page.index(SETTINGS_END)
    return page[:start] + "\n" + settings_table() + "\n" + page[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    wanted = {
        OPENAPI_JSON: openapi_text(),
        CONFIGURATION: configuration_text(CONFIGURATION.read_text(encoding="utf-8")),
    }
    stale = []
    for path, text in wanted.items():
        name = path.relative_to(ROOT)
        committed = path.read_text(encoding="utf-8") if path.exists() else ""
        if committed == text:
            continue
        if args.check:
            stale.append(str(name))
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {name}")
    if stale:
        print(f"{', '.join(stale)}: differs from what the code generates; run make reference")
        return 1
    print("the docs' generated reference matches the code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
