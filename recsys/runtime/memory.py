"""Memory a serving process no longer uses, handed back to the system after training.

A retrain in a serving process (``RECSYS_TRAINING_MODE=thread``) allocates
far more than serving does: EASE's Gram matrix and its inverse are two
catalog-squared float64 arrays. Freed, most of that stays with the process:
glibc raises its threshold for serving an allocation from the heap to the
size of the largest block it has returned, so the next large arrays come from
the heap (and the training thread's own arena), where freed pages are kept
for reuse. ``malloc_trim(0)`` gives every free page of every arena back, and
``return_large_blocks_at_once`` (the production server calls it at start)
keeps the threshold where it is, so an array of 128 KiB or more is always
mapped on its own and unmapped when freed: loading a new version (whose
checks make catalog-squared temporaries) leaves nothing behind either.
Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


# mallopt's parameter, and glibc's default value for it.
_M_MMAP_THRESHOLD, _LARGE_BLOCK_BYTES = -3, 128 * 1024


def return_large_blocks_at_once() -> bool:
    """Have every allocation of 128 KiB or more mapped apart and unmapped when freed.

    Set once in a process (a forked worker inherits it). Returns whether it could.
    """
    if _LIBC is None:
        return False
    return bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, _LARGE_BLOCK_BYTES))


def give_back_freed_memory() -> bool:
    """Return the process's free heap pages to the system; whether anything was given back."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))


def then_give_back_memory(work: Callable[[], T]) -> T:
    """Run ``work`` (a training run), then give back the memory it freed, even if it failed."""
    try:
        return work()
    finally:
        if give_back_freed_memory():
            logger.debug("gave freed memory back to the system after training")
