"""The capacity plan: each part's rate per core, and its load at 10x and 100x, from the records.

Measures nothing itself: it reads the records the other benchmarks wrote
(``bench/records``, or ``--records``) and turns them into the figures of the
capacity plan on the "Scaling out" page, so that page quotes runs, never
typed figures:

- ingest: events a second per PostgreSQL core, by COPY (``bench_scale.md``,
  the largest size) and through the API in batches of 1,000 and one event a
  post (``bench_ingestion.md``); the importer, the app and PostgreSQL share
  the machine's cores, so a rate divided by the cores is a floor;
- answers: a second per app core, from the server's CPU time per
  /recommend (``bench_serving.md``: cached with Redis, and uncached at
  5,000 products);
- Redis: round trips per answer (``bench_redis_ops.md``), and the answers a
  second one Redis core carries at ``REDIS_OPS_PER_CORE`` simple operations
  a second (the order ``redis-benchmark`` reports; not measured here);
- training on one machine: ``bench_scale.md``'s ALS training at its
  largest size, grown linearly;
- training on Spark: the executors' CPU seconds per 10M events
  (``bench_scale_spark.md``) and the Python driver's peak RSS at its sizes;
- serving memory: the Spark-trained artifact's size at its largest size.

At 10x and 100x today's largest benchmark size (10M events, 1M users, 10
events a user, 50,000 products) each part's work grows with what drives it:
ingest and training with the events, serving memory with the users, answers
with the traffic (not with the log: ranking is linear in the catalog).

Usage: python bench/bench_capacity.py [--records bench/records] [--record FILE]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from verdicts import Verdicts, add_record_option  # noqa: E402

# Simple operations a second one Redis core serves (GET/SET, as
# redis-benchmark measures them): an assumption, not a figure of this project.
REDIS_OPS_PER_CORE = 100_000
TODAY_EVENTS = 10_000_000
EVENTS_PER_USER = 10
SCALES = {"10x": 10, "100x": 100}
MIB = 1024**2


class RecordError(ValueError):
    """A record lacks a figure the plan needs."""


def number(text: str) -> float:
    """Return the first number of a text such as '99,622' or '286 s'."""
    found = re.search(r"-?\d[\d,]*(?:\.\d+)?", text)
    if found is None:
        raise RecordError(f"no number in {text!r}")
    return float(found.group().replace(",", ""))


def cpus(record: str) -> int:
    """Return the CPUs of the machine a record was made on."""
    return int(number(record.split("on a machine with", 1)[1]))


def table_rows(record: str) -> list[tuple[str, list[str]]]:
    """Return a bench_scale table's rows: (label, cells), in order (labels may repeat)."""
    rows = []
    for line in record.splitlines():
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) >= 2:
            rows.append((parts[0], parts[1:]))
    return rows


def row_after(rows: list[tuple[str, list[str]]], first: str, then: str | None = None) -> list[str]:
    """Return the cells of the row labelled ``first`` (or of the ``then`` row just after it)."""
    for at, (name, cells) in enumerate(rows):
        if name == first:
            if then is None:
                return cells
            if at + 1 < len(rows) and rows[at + 1][0] == then:
                return rows[at + 1][1]
    raise RecordError(f"no row {first!r}" + (f" then {then!r}" if then else ""))


def measured(cells: list[str]) -> list[tuple[int, str]]:
    """Return (column, cell) of the cells that hold a figure (not '-')."""
    return [(i, cell) for i, cell in enumerate(cells) if cell.strip() != "-"]


def ingest(scale: str, ingestion: str) -> dict[str, float | str]:
    rows = table_rows(scale)
    sizes = row_after(rows, "events")
    column, copy = measured(row_after(rows, "import PostgreSQL (COPY)", "events/s"))[-1]
    postgres = next(
        line for line in ingestion.splitlines() if line.strip().startswith("PostgreSQL")
    )
    single, batch = (number(cell) for cell in re.split(r"\s{2,}", postgres.strip())[1:3])
    return {
        "copy": number(copy),
        "copy_size": sizes[column],
        "copy_cpus": cpus(scale),
        "batch": batch,
        "single": single,
        "api_cpus": cpus(ingestion),
    }


def local_training(scale: str) -> dict[str, float | str]:
    """Return the local engine's ALS training + publish: the largest size, and a line through two.

    The line through the two largest sizes (seconds and GiB per event) grows
    the figures to other sizes, as bench_scale's own 10M projection does.
    """
    rows = table_rows(scale)
    sizes = row_after(rows, "events")
    cells = measured(row_after(rows, "ALS train + publish"))
    if len(cells) < 2:
        raise RecordError("bench_scale.md: ALS training at fewer than two sizes")
    (small, low), (large, high) = cells[-2], cells[-1]
    spread = _events(sizes[large]) - _events(sizes[small])
    seconds = [number(cell.split("/")[0]) for cell in (low, high)]
    gib = [number(cell.split("/")[1]) for cell in (low, high)]
    return {
        "size": sizes[large],
        "events": _events(sizes[large]),
        "seconds": seconds[1],
        "gib": gib[1],
        "seconds_per_event": (seconds[1] - seconds[0]) / spread,
        "gib_per_event": (gib[1] - gib[0]) / spread,
    }


def serving_cpu(serving: str) -> dict[str, float]:
    """Return the server's CPU microseconds per /recommend: cached (Redis), and uncached."""
    section, configuration, found = "", "", {}
    for line in serving.splitlines():
        if line and not line.startswith(" "):
            section = line
        elif re.match(r"  \S", line):
            configuration = line.strip()
        elif "server CPU per request (" in line:
            microseconds = number(line.split("/recommend", 1)[1])
            if section.startswith("bundled data") and configuration.startswith("cache on, Redis"):
                found["cached"] = microseconds
            if "5,000 products" in section and configuration.startswith("cache off"):
                found["uncached"] = microseconds
    if set(found) != {"cached", "uncached"}:
        raise RecordError(f"bench_serving.md: found only {sorted(found)} of cached, uncached")
    return found


def redis_trips(redis: str) -> dict[str, float]:
    trips = {}
    for line in redis.splitlines():
        match = re.match(r"\| round trips per answer: (.+?) \| ([\d.]+) \|", line)
        if match:
            trips[match.group(1)] = float(match.group(2))
    if not trips:
        raise RecordError("bench_redis_ops.md: no round trips per answer")
    return trips


def spark_training(spark: str) -> dict[str, float | str]:
    rows = table_rows(spark)
    sizes = row_after(rows, "events")
    cpu = measured(row_after(rows, "executors' CPU (JVM)"))
    times = row_after(rows, "Spark path: time / driver RSS")
    # bench_scale's local engine has an "artifact size" row too, empty in a --spark-only run.
    artifact = next(
        (measured(cells) for name, cells in reversed(rows) if name == "artifact size"), []
    )
    if not artifact:
        raise RecordError("bench_scale_spark.md: no artifact size")
    sweeps = re.search(r"--spark-iterations (\d+)", spark)
    column, seconds = cpu[-1]
    rss = [number(times[i].split("/")[1]) for i, _ in measured(times)]
    return {
        "size": sizes[column],
        "events": _events(sizes[column]),
        "cpu_seconds": number(seconds),
        "sweeps": int(sweeps.group(1)) if sweeps else 15,
        "driver_rss": rss,
        "driver_sizes": [sizes[i] for i, _ in measured(times)],
        "artifact_mib": number(artifact[-1][1]),
        "artifact_size": sizes[artifact[-1][0]],
    }


def _events(size: str) -> float:
    return number(size) * {"M": 1e6, "k": 1e3}.get(size.strip()[-1], 1)


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def plan(records: Path, verdicts: Verdicts) -> None:
    def read(name: str) -> str:
        path = records / name
        if not path.is_file():
            raise RecordError(f"{path} is missing: run the benchmark that writes it")
        return path.read_text(encoding="utf-8")

    pg = ingest(read("bench_scale.md"), read("bench_ingestion.md"))
    cpu = serving_cpu(read("bench_serving.md"))
    trips = redis_trips(read("bench_redis_ops.md"))
    spark = spark_training(read("bench_scale_spark.md"))

    copy_core = float(pg["copy"]) / float(pg["copy_cpus"])
    batch_core = float(pg["batch"]) / float(pg["api_cpus"])
    shown = records.relative_to(ROOT) if records.is_relative_to(ROOT) else records
    print(f"Capacity plan from the records in {shown}")
    print("today: 10M events, 1M users (10 events a user), 50,000 products")
    print()
    print("PostgreSQL ingest (bench_scale.md, bench_ingestion.md; floors: the importer or")
    print("the app shared the cores with PostgreSQL)")
    print(f"  COPY at {pg['copy_size']}: {pg['copy']:,.0f} events/s on {pg['copy_cpus']} CPUs")
    print(
        f"  API on {pg['api_cpus']} CPUs: {pg['batch']:,.0f} events/s in batches of 1,000, "
        f"{pg['single']:,.0f} single-event posts/s"
    )
    for scale, factor in SCALES.items():
        events = TODAY_EVENTS * factor
        print(
            f"  {scale}: importing {events / 1e6:,.0f}M events takes "
            f"{hours(events / copy_core)} of one PostgreSQL core by COPY, "
            f"{hours(events / batch_core)} through the API in batches"
        )
    verdicts.inform("ingest by COPY, events/s per PostgreSQL core (floor)", f"{copy_core:,.0f}")
    verdicts.inform(
        "ingest by API batches, events/s per PostgreSQL core (floor)", f"{batch_core:,.0f}"
    )
    verdicts.inform(
        "ingest by single-event posts, events/s (one transaction each)", f"{pg['single']:,.0f}"
    )

    print()
    print("Answers per app core (bench_serving.md: the server's CPU per /recommend)")
    for name, microseconds in cpu.items():
        described = "cached, with Redis" if name == "cached" else "uncached, 5,000 products"
        print(f"  {described}: {microseconds:,.0f} us, {1e6 / microseconds:,.0f} answers/s a core")
        verdicts.inform(f"answers/s per app core, {described}", f"{1e6 / microseconds:,.0f}")

    print()
    print(f"Redis (bench_redis_ops.md; a Redis core: {REDIS_OPS_PER_CORE:,} ops/s, assumed)")
    for name, count in trips.items():
        per_core = REDIS_OPS_PER_CORE / max(count, 0.01)
        print(f"  {name}: {count:.2f} round trips, {per_core:,.0f} answers/s a Redis core")
        verdicts.inform(f"Redis round trips per answer, {name}", f"{count:.2f}")
    heaviest = max(trips.values())
    app_cores = REDIS_OPS_PER_CORE / heaviest / (1e6 / cpu["uncached"])
    print(f"  one Redis core keeps up with about {app_cores:,.0f} app cores answering uncached")
    verdicts.inform(
        "app cores one Redis core keeps up with (uncached answers)", f"{app_cores:,.0f}"
    )

    local = local_training(read("bench_scale.md"))
    print()
    print("Training on one machine (bench_scale.md: implicit's ALS in one process)")
    print(f"  at {local['size']}: {local['seconds']:.1f} s and {local['gib']:.2f} GiB peak RSS")
    for scale, factor in {"today": 1, **SCALES}.items():
        more = TODAY_EVENTS * factor - local["events"]
        print(
            f"  {scale}: about {hours(local['seconds'] + more * local['seconds_per_event'])} "
            f"and {local['gib'] + more * local['gib_per_event']:,.1f} GiB (projected)"
        )
    verdicts.inform(
        "local training, seconds per 10M more events (projected)",
        f"{local['seconds_per_event'] * TODAY_EVENTS:,.0f}",
    )

    per_10m = spark["cpu_seconds"] * TODAY_EVENTS / spark["events"]
    per_sweep_default = per_10m * 15 / spark["sweeps"]
    print()
    print(f"Training on Spark (bench_scale_spark.md: {spark['sweeps']} sweeps, two fits, metrics)")
    print(f"  executors' CPU at {spark['size']}: {spark['cpu_seconds']:,.0f} s")
    print(
        f"  per 10M events: {hours(per_10m)} of one executor core; at 15 sweeps (linear in "
        f"the sweeps, an upper bound): {hours(per_sweep_default)}"
    )
    for scale, factor in SCALES.items():
        cores16 = per_sweep_default * factor / 16
        print(
            f"  {scale}: {hours(per_sweep_default * factor)} of executor cores at 15 sweeps, "
            f"{hours(cores16)} on 16 cores"
        )
    rss = ", ".join(
        f"{size} {value:.0f} MiB"
        for size, value in zip(spark["driver_sizes"], spark["driver_rss"], strict=True)
    )
    print(f"  the Python driver's peak RSS: {rss}")
    verdicts.inform(
        "Spark: executor core-seconds per 10M events", f"{per_10m:,.0f} ({spark['sweeps']} sweeps)"
    )

    per_user = spark["artifact_mib"] * MIB / (spark["events"] / EVENTS_PER_USER)
    print()
    print("Serving memory (bench_scale_spark.md: the artifact a server maps for its workers)")
    print(
        f"  at {spark['artifact_size']}: {spark['artifact_mib']:.0f} MiB, "
        f"{per_user:.0f} bytes a user"
    )
    for scale, factor in SCALES.items():
        users = TODAY_EVENTS / EVENTS_PER_USER * factor
        print(
            f"  {scale}: {users / 1e6:,.0f}M users, {per_user * users / 1024**3:.1f} GiB a server"
        )
    verdicts.inform("artifact bytes per user", f"{per_user:.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--records",
        type=Path,
        default=ROOT / "bench" / "records",
        help="the folder of the records to read (default: bench/records)",
    )
    add_record_option(parser)
    args = parser.parse_args()
    verdicts = Verdicts("bench_capacity.py", record=args.record)
    try:
        plan(args.records.resolve(), verdicts)
    except RecordError as exc:
        print(f"bench_capacity.py: {exc}", file=sys.stderr)
        return 2
    return verdicts.finish()


if __name__ == "__main__":
    sys.exit(main())
