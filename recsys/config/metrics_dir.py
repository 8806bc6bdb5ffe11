"""The directory a production server's workers share their Prometheus series in.

prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` when it is first
imported, so ``serve.py`` and ``gunicorn.conf.py`` prepare it before the app
(and with it prometheus-client) is imported; this module imports neither.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from recsys.data.files import make_writable_dir
from recsys.errors import OutputFileError

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# The name of a directory the server made itself (and removes on exit).
OWN_PREFIX = "recsys-metrics-"


def prepare_metrics_dir() -> Path:
    """Give the workers an empty directory to share their metrics in, named in the environment.

    An operator's own directory (``PROMETHEUS_MULTIPROC_DIR``) is kept,
    emptied of the series files of a previous run (they would be added to
    this run's); otherwise a new temporary one, removed on exit.

    Raises:
        OutputFileError: The operator's directory cannot be made or written.
    """
    given = os.environ.get(VARIABLE)
    try:
        path = Path(given) if given else Path(tempfile.mkdtemp(prefix=OWN_PREFIX))
        make_writable_dir(path)
        for series in path.glob("*.db"):
            series.unlink()
    except OSError as exc:
        raise OutputFileError(given or tempfile.gettempdir(), exc, what=f"{VARIABLE} ") from None
    os.environ[VARIABLE] = str(path)
    return path


def metrics_dir_refusal() -> str | None:
    """Return why ``PROMETHEUS_MULTIPROC_DIR`` cannot be used; None when unset or writable.

    For the processes that do not prepare the directory (``app.py`` and the
    ``flask`` commands): they make it if it is missing, as ``serve.py`` does,
    but never empty it, since a running server's series may be in it.
    """
    given = os.environ.get(VARIABLE)
    if not given:
        return None
    try:
        make_writable_dir(Path(given))
    except OSError as exc:
        return str(OutputFileError(given, exc, what=f"{VARIABLE} "))
    return None


def remove_own_metrics_dir(path: Path) -> None:
    """Remove the directory if the server made it (an operator's own is kept)."""
    if path.name.startswith(OWN_PREFIX):
        shutil.rmtree(path, ignore_errors=True)
