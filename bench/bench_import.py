"""Time ``import recommendation_system`` against the bare imports it needs.

The pipeline (simulate -> top-5 -> SVD -> RMSE) should add at most 0.5 s to
``import pandas, surprise, faker, flask`` on this machine. Both are timed in
fresh interpreters in the same run, alternating, and the medians compared.

Prints PASS or FAIL; exits 1 if the target fails.

Usage: python bench/bench_import.py [--runs N] [--record FILE]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from verdicts import Verdicts, add_record_option  # noqa: E402

BARE = "import pandas, surprise, faker, flask"
PIPELINE = "import recommendation_system"
TARGET_SECONDS = 0.5


def wall_time(code: str) -> float:
    """Return the wall time of a fresh interpreter running ``code``."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    add_record_option(parser)
    args = parser.parse_args()
    verdicts = Verdicts("bench_import.py", record=args.record)
    wall_time(PIPELINE)  # warm the file cache and bytecode for both
    bare, pipeline = [], []
    for _ in range(args.runs):
        bare.append(wall_time(BARE))
        pipeline.append(wall_time(PIPELINE))
    bare_s, pipeline_s = statistics.median(bare), statistics.median(pipeline)
    added = pipeline_s - bare_s
    print(f"runs per command:          {args.runs}")
    print(f"bare imports   (median):   {bare_s:.3f} s   [{BARE}]")
    print(f"pipeline import (median):  {pipeline_s:.3f} s   [{PIPELINE}]")
    print(f"pipeline adds:             {added:.3f} s  (ratio {pipeline_s / bare_s:.2f}x)")
    verdicts.check(
        f"import recommendation_system adds <= {TARGET_SECONDS:.1f} s",
        f"{added:.3f} s",
        added <= TARGET_SECONDS,
    )
    return verdicts.finish()


if __name__ == "__main__":
    sys.exit(main())
