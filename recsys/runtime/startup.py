"""The start-up step: schema, bundled log, orphaned jobs and the first model, once.

``ServingRuntime.init`` runs ``initialise`` under an exclusive file lock, so
processes starting together do the work once: the first does it, the others
wait and find it done.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from recsys.data.catalog import catalog_for_log
from recsys.data.interactions import load_interactions
from recsys.store.events import EventStore
from recsys.store.migrate import upgrade_to_head
from recsys.training import NoTrainingDataError

if TYPE_CHECKING:
    from recsys.runtime.wiring import ServingRuntime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InitReport:
    """What ``ServingRuntime.init`` did.

    Attributes:
        filled: Whether the empty store was filled from the bundled log.
        closed_jobs: Job records a dead process had left open.
        trained: The version trained because none was published, if any.
        version: The newest published version of the configured model type;
            None when there is none and the store has no interaction to train
            one on yet.
        seconds: How long it took.
    """

    filled: bool
    closed_jobs: int
    trained: str | None
    version: str | None
    seconds: float


def initialise(runtime: ServingRuntime) -> InitReport:
    """Prepare the runtime's store and first model, under the start-up file lock.

    Args:
        runtime: The runtime whose store, registry and trainer to use.

    Returns:
        What was done.

    Raises:
        One of ``STORE_OUTAGES`` when the database is unreachable,
        ``DataFileError`` when the bootstrap log is unusable,
        ``ModelDirectoryError`` when the model directory cannot be written.
    """
    started = time.perf_counter()
    settings, registry = runtime.settings, runtime.registry
    registry.ensure_root()  # the lock below lives there
    with exclusive_file_lock(settings.model_dir / ".init.lock"):
        upgrade_to_head(runtime.store.engine)
        logger.info("event store ready: %s", _safe_url(settings.database_url))
        filled = runtime.bootstrap_if_empty()
        closed = runtime.close_orphaned_jobs()
        trained = None
        latest = registry.load_latest(model_type=runtime.model_type)
        version: str | None
        if latest is None:
            logger.info(
                "no valid %s model in %s: training the first one",
                runtime.model_type,
                registry.root,
            )
            trained = version = _train_first_model(runtime)
        else:
            version = latest.metadata.version
    seconds = time.perf_counter() - started
    if version is None:
        logger.info(
            "ready in %.1f s: no data yet; the first model is trained when events arrive",
            seconds,
        )
    else:
        logger.info(
            "ready in %.1f s: model %s%s", seconds, version, " (trained now)" if trained else ""
        )
    return InitReport(filled, closed, trained, version, round(seconds, 3))


def _train_first_model(runtime: ServingRuntime) -> str | None:
    """Train and publish the first model; return its version, or None without data."""
    try:
        return runtime.train_exclusively().version
    except NoTrainingDataError:
        # An empty store (DATA_PATH=) is a service waiting for its first
        # events, not a failed start: systemd would restart it in a loop.
        return None


def bootstrap_if_empty(store: EventStore, log_path: Path | None, catalog_path: Path | None) -> bool:
    """Load the bundled log (and its catalog, if it has one) into an empty store.

    Args:
        store: The event store.
        log_path: The bundled interaction log (None: start empty).
        catalog_path: Its catalog file, if any.

    Returns:
        Whether the store was filled.
    """
    if log_path is None or not store.is_empty():
        return False
    log = load_interactions(log_path)
    catalog = catalog_for_log(log, catalog_path)
    filled = store.bootstrap(catalog, log, source=log_path)
    if filled:
        logger.info(
            "filled the empty event store: %d interactions from %s, %d products%s",
            len(log),
            log_path,
            len(catalog),
            f" named by {catalog_path}" if catalog_path else " (no catalog file: shown by id)",
        )
    return filled


class exclusive_file_lock:  # noqa: N801 - used as a context manager, like open()
    """Hold an exclusive lock on a file, waiting for it; released on exit or process death."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


def _safe_url(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)
