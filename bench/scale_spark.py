"""bench_scale.py's Spark steps: the distributed training path, and its targets.

``step_spark_train`` runs ``train_on_spark`` on the size's Parquet log in
Spark's local mode (``local[2]``: the executors are threads of the driver's
JVM) and reports the Python driver's own peak RSS (what must not grow with
the log), the JVM's CPU seconds from the start of training to the published
artifact (the executors' work) and its peak RSS.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

MIB = 1024**2
TARGETS = {"driver_rss_10M": 700 * MIB, "driver_rss_growth": 1.5}


def _jvm_cpu_seconds(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _jvm_peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM")) * 1024


def step_spark_train(args: dict) -> dict:
    from recsys.store.artifacts import ModelRegistry
    from recsys.training import EventSource, SparkALSEngine, TrainingSettings, train_on_spark

    work = Path(args["dir"])
    registry = ModelRegistry(work / "spark-models")
    params = {"iterations": args["iterations"]}
    settings = TrainingSettings(model="als", model_params=params)
    source = EventSource(parquet=str(work / "log.parquet"))
    with SparkALSEngine("local[2]", driver_memory=args["jvm_memory"]) as spark:
        jvm = spark.session.sparkContext._gateway.proc.pid
        cpu = _jvm_cpu_seconds(jvm)
        started = time.perf_counter()
        meta = train_on_spark(spark, source, registry, settings, work / "log.products.csv")
        seconds = time.perf_counter() - started
        cpu = _jvm_cpu_seconds(jvm) - cpu
        jvm_rss = _jvm_peak_rss(jvm)
    size = sum(f.stat().st_size for f in (registry.root / meta.version).iterdir())
    return {
        "seconds": seconds,
        "jvm_cpu_seconds": cpu,
        "jvm_rss": jvm_rss,
        "driver_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "ndcg": meta.metrics.get("ndcg@10"),
        "ranked_users": meta.metrics.get("ranked_users"),
        "artifact_bytes": size,
    }


def spark_rows() -> list:
    """Return bench_scale's table rows for the Spark path."""

    def cell(text):
        return lambda r: text(r["spark_train"]) if "spark_train" in r else "-"

    return [
        (
            "Spark path: time / driver RSS",
            cell(lambda s: f"{s['seconds']:.0f} s / {s['driver_rss'] / MIB:.0f} MiB"),
        ),
        ("  executors' CPU (JVM)", cell(lambda s: f"{s['jvm_cpu_seconds']:.0f} s")),
        ("  JVM peak RSS", cell(lambda s: f"{s['jvm_rss'] / MIB:.0f} MiB")),
        ("  holdout NDCG@10", cell(lambda s: f"{s['ndcg']:.4f}")),
        ("  artifact size", cell(lambda s: f"{s['artifact_bytes'] / MIB:.0f} MiB")),
    ]


def judge_spark(results: dict[int, dict], verdicts) -> None:
    """Judge the driver's memory: under 700 MiB at 10M, growing under 1.5x from 1M to 10M."""
    one, ten = results.get(1_000_000, {}), results.get(10_000_000, {})
    target = "Spark path driver peak RSS at 10M < 700 MiB"
    growth = "Spark path driver peak RSS grows < 1.5x from 1M to 10M"
    if "spark_train" not in ten:
        verdicts.not_run(target, "needs --spark-sizes with 10M")
        verdicts.not_run(growth, "needs --spark-sizes 1M,10M")
        return
    rss = ten["spark_train"]["driver_rss"]
    verdicts.check(target, f"{rss / MIB:.0f} MiB", rss < TARGETS["driver_rss_10M"])
    if "spark_train" not in one:
        verdicts.not_run(growth, "needs --spark-sizes 1M,10M")
        return
    ratio = rss / one["spark_train"]["driver_rss"]
    verdicts.check(growth, f"{ratio:.2f}x", ratio < TARGETS["driver_rss_growth"])
