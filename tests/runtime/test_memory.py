"""After training, a serving process gives the memory training freed back to the system."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.runtime import memory


def resident_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_training_work_returns_its_result():
    assert memory.then_give_back_memory(lambda: "v00002") == "v00002"


def test_a_failed_training_run_still_raises_its_error():
    def fail():
        raise ValueError("no data")

    with pytest.raises(ValueError, match="no data"):
        memory.then_give_back_memory(fail)


@pytest.mark.skipif(memory._LIBC is None, reason="malloc_trim is glibc's")
def test_memory_freed_by_training_leaves_the_process():
    kept = []

    def train() -> None:
        # A freed 16 MB array raises glibc's threshold: the 4 MB arrays after
        # it come from the heap, and the one still alive above them (a model
        # kept) stops the heap from shrinking when they are freed.
        del kept[:]
        first = np.ones(16 * 1024 * 1024 // 8)
        del first
        blocks = [np.ones(4 * 1024 * 1024 // 8) for _ in range(40)]
        kept.append(np.ones(1024 * 1024 // 8))
        del blocks

    before = resident_kib()
    memory.then_give_back_memory(train)
    assert resident_kib() - before < 32 * 1024  # far less than the 160 MB it held
