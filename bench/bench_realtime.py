"""Benchmark: does the service learn from every event? A chronological replay of MovieLens.

ml-latest-small's ratings become a shop's events (each rating one purchase of
the film, so a film seen is never recommended again) and its films the
catalog. The service (EASE unless ``--model``) trains on the events before
the 80% time cut; then the rest is replayed in time order through the
service (in-process Flask client): before each event, the user's list of 10
is asked for, and the event's film scores a hit if it is in it (hit@10, and
NDCG@10 of that one next film); then the event is posted. No retrain runs.

Modes, side by side on the same requests:
- fold-in: the service as it is (``GET /recommend``: the history as it is now);
- today: the previous behaviour, computed beside it from the same version:
  a user of the training data ranked from their training-time row, anyone
  else the popular list (films seen left out);
- popularity: the most-clicked films, films seen left out;
- session: ``POST /recommend/session`` with the user's events since the cut
  (films seen excluded), as an anonymous visitor with the same clicks.

Groups: users present in training; users first seen after the cut, by how
many events they have had so far (1, 2, 3, 4-9, 10+). A check run sends the
first ``--http-check`` requests through a real HTTP server (``app.py``) and
compares its lists with the in-process ones.

Targets: users first seen after the cut, from their 3rd event on (3+), at
least 2.0x popularity's hit@10 with fold-in; users present in training, with
fold-in, at least today's hit@10; sessions of the users first seen after the
cut within 10% of their fold-in hit@10. Exploration is off (its share of
slots goes to rarely shown films; ``bench_exploration.py`` measures it).
Exits 1 if a target fails.

Then, for EASE, the same replay with its recency (``--recency``, 5 by
default: a user's latest films weigh the most), printed beside for
information.

Usage: python bench/bench_realtime.py [RATINGS] [--model ease] [--params FILE]
       [--recency 5] [--max-events 8000] [--http-check 200] [--record FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from verdicts import Verdicts, add_record_option  # noqa: E402

from app import create_app  # noqa: E402
from recsys.data.catalog import CATALOG_FILE, write_catalog  # noqa: E402
from recsys.data.eda import MOVIELENS_MOVIES_FILE, load_eda_log  # noqa: E402

DEFAULT_RATINGS = ROOT.parent / "shared" / "datasets" / "ml-latest-small" / "ratings.csv"
K = 10
CUT = 0.8
MODES = ("fold-in", "today", "popularity", "session")
# Users first seen after the cut, by how many events they have had so far.
NEW_GROUPS = ("new: 0 so far", "new: 1", "new: 2", "new: 3", "new: 4-9", "new: 10+")
NEW_3_PLUS, NEW_ALL, TRAINED = "new: 3+", "new: all", "in training"


@dataclass
class Tally:
    """Hits and NDCG of one (group, mode)."""

    requests: int = 0
    hits: int = 0
    ndcg: float = 0.0
    # user -> [hits, requests]: each user counts once in ``user_hit_rate``.
    users: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    def add(self, user: int, listed: list[int], target: int) -> None:
        self.requests += 1
        self.users[user][1] += 1
        if target in listed:
            self.hits += 1
            self.users[user][0] += 1
            self.ndcg += 1.0 / math.log2(listed.index(target) + 2)

    @property
    def hit_rate(self) -> float:
        """Hits over requests: heavy users weigh most."""
        return self.hits / self.requests if self.requests else float("nan")

    @property
    def user_hit_rate(self) -> float:
        """Each user's hit rate, averaged over users (as ranking metrics are)."""
        rates = [hits / requests for hits, requests in self.users.values()]
        return float(np.mean(rates)) if rates else float("nan")


@dataclass
class Replay:
    """What the replay measured: a tally per (group, mode)."""

    tallies: dict[tuple[str, str], Tally] = field(default_factory=lambda: defaultdict(Tally))

    def add(self, groups: list[str], mode: str, user: int, listed: list[int], target: int) -> None:
        for group in groups:
            self.tallies[(group, mode)].add(user, listed, target)

    def hit(self, group: str, mode: str) -> float:
        return self.tallies[(group, mode)].hit_rate

    def user_hit(self, group: str, mode: str) -> float:
        return self.tallies[(group, mode)].user_hit_rate


def shop_files(ratings: Path, directory: Path) -> tuple[Path, pd.DataFrame]:
    """Write the events before the cut as a log (catalog beside it); return it and the rest."""
    _, catalog, _ = load_eda_log(ratings)
    if catalog is None:
        raise SystemExit(f"no {MOVIELENS_MOVIES_FILE} beside {ratings}")
    raw = pd.read_csv(ratings)
    events = pd.DataFrame(
        {
            "user_id": raw["userId"],
            "product_clicked": raw["movieId"],
            "purchased": 1,
            "timestamp": pd.to_datetime(raw["timestamp"], unit="s", utc=True),
        }
    ).sort_values("timestamp", kind="stable")
    cut = int(len(events) * CUT)
    train, rest = events.iloc[:cut], events.iloc[cut:]
    catalog = catalog.assign(category=catalog["category"].fillna("(no genres listed)"), price=0.0)
    path = directory / "interactions.csv"
    # With each rating's time, as the replayed events have theirs: without it
    # every imported event would happen at the import, after all of them.
    train.assign(timestamp=train["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(
        path, index=False, lineterminator="\n"
    )
    write_catalog(catalog, directory / CATALOG_FILE)
    return path, rest


def event_of(row) -> dict:
    """Return the replayed rating as the shop's event: a purchase, at the rating's own time.

    Its own time, not the moment of the replay: a model that weights a
    user's recent products (EASE's recency) then orders them as they happened.
    """
    return {
        "user_id": int(row.user_id),
        "product_id": int(row.product_clicked),
        "purchased": 1,
        "timestamp": row.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def settings_for(state: Path, log: Path, model: str, params: Path | None) -> dict[str, str]:
    return {
        **({"MODEL_PARAMS_PATH": str(params)} if params is not None else {}),
        "DATABASE_URL": f"sqlite:///{state / 'events.db'}",
        "MODEL_DIR": str(state / "models"),
        "DATA_PATH": str(log),
        "MODEL": model,
        "RATE_LIMIT": "",
        "RATE_LIMIT_INGEST": "",
        "RATE_LIMIT_ADDRESS": "",
        # No retrain: the replay measures what the live version learns from events alone.
        "AUTO_RETRAIN": "0",
        # Exploration's slots go to rarely shown films (bench_exploration.py measures them):
        # off, so the lists here are the model's own.
        "EXPLORATION": "0",
        "LOG_LEVEL": "WARNING",
    }


def replay(app, rest: pd.DataFrame, max_events: int) -> tuple[Replay, list[list[int]]]:
    """Replay the events after the cut; return the tallies and fold-in's lists in order."""
    runtime = app.extensions["recsys.runtime"]
    client = app.test_client()
    version = runtime.service.live.current()
    model, popularity = version.model, version.popularity
    trained_users = set(model.user_ids.tolist())
    seen: dict[int, set[int]] = defaultdict(set)
    since_cut: dict[int, list[int]] = defaultdict(list)
    store = runtime.store
    for user in rest["user_id"].unique().tolist():
        seen[user] = set(store.user_history(int(user)).product_ids)
    result, lists = Replay(), []
    for row in rest.head(max_events).itertuples(index=False):
        user, film = int(row.user_id), int(row.product_clicked)
        if user in trained_users:
            groups = [TRAINED]
        else:
            so_far = len(since_cut[user])
            label = NEW_GROUPS[min(so_far, 4)] if so_far < 10 else NEW_GROUPS[5]
            groups = [label, NEW_ALL, *([NEW_3_PLUS] if so_far >= 3 else [])]
        body = client.get(f"/recommend?user_id={user}&n={K}").get_json()
        folded = [item["product_id"] for item in body["recommendations"]]
        lists.append(folded)
        result.add(groups, "fold-in", user, folded, film)
        exclude = seen[user]
        popular = popularity.top(K, exclude=exclude).product_ids.tolist()
        result.add(groups, "popularity", user, popular, film)
        today = model.rank_user(user, K, exclude=exclude) if user in trained_users else None
        result.add(
            groups, "today", user, popular if today is None else today.product_ids.tolist(), film
        )
        if since_cut[user]:
            session = {"items": since_cut[user][-1000:], "n": K, "exclude": sorted(exclude)[-1000:]}
            answer = client.post("/recommend/session", json=session).get_json()
            result.add(
                groups, "session", user, [i["product_id"] for i in answer["recommendations"]], film
            )
        else:
            result.add(groups, "session", user, popular, film)
        posted = client.post("/interactions", json=event_of(row))
        assert posted.status_code == 201, posted.get_data(as_text=True)
        seen[user].add(film)
        since_cut[user].append(film)
    return result, lists


def http_check(
    state: Path, log: Path, model: str, params: Path | None, rest: pd.DataFrame, count: int
) -> list[list[int]]:
    """Replay the first ``count`` events through app.py over HTTP; return its lists in order."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {f"RECSYS_{k}": v for k, v in settings_for(state, log, model, params).items()}
    env.update({"PATH": "/usr/bin:/bin", "HOME": str(state)})
    server = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if requests.get(f"{base}/readyz", timeout=10).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("app.py did not become ready")
            time.sleep(0.5)
        lists = []
        for row in rest.head(count).itertuples(index=False):
            user = int(row.user_id)
            body = requests.get(f"{base}/recommend?user_id={user}&n={K}", timeout=30).json()
            lists.append([item["product_id"] for item in body["recommendations"]])
            requests.post(f"{base}/interactions", json=event_of(row), timeout=30).raise_for_status()
        return lists
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ratings", nargs="?", default=str(DEFAULT_RATINGS))
    parser.add_argument("--model", default="ease")
    parser.add_argument(
        "--params",
        type=Path,
        default=None,
        metavar="FILE",
        help="the model's parameters, a file as tune --save writes (RECSYS_MODEL_PARAMS_PATH)",
    )
    parser.add_argument(
        "--recency",
        type=float,
        default=5.0,
        metavar="R",
        help="with --model ease, replay again with EASE's recency R beside (0: not)",
    )
    parser.add_argument("--max-events", type=int, default=8000, help="replayed events at most")
    parser.add_argument("--http-check", type=int, default=200, help="events replayed over HTTP")
    add_record_option(parser)
    args = parser.parse_args()
    verdicts = Verdicts("bench_realtime.py", record=args.record)
    ratings = Path(args.ratings)
    if not ratings.is_file():
        print(f"skipped: no MovieLens ratings at {ratings}")
        verdicts.not_run("chronological replay", f"no MovieLens ratings at {ratings}")
        return verdicts.finish()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-realtime-") as tmp:
        state = Path(tmp)
        log, rest = shop_files(ratings, state)
        (state / "inproc").mkdir()
        (state / "http").mkdir()
        app = create_app(settings_for(state / "inproc", log, args.model, args.params))
        runtime = app.extensions["recsys.runtime"]
        runtime.init()
        runtime.start()
        print(
            f"{ratings.parent.name}: trained {args.model} on the {CUT:.0%} of events before "
            f"the time cut; replaying {min(args.max_events, len(rest)):,} of the {len(rest):,} "
            f"later events in time order (hit@{K} and NDCG@{K} of the next film)"
        )
        started = time.perf_counter()
        result, lists = replay(app, rest, args.max_events)
        seconds = time.perf_counter() - started
        runtime.close()
        print_table(result)
        print(
            f"  hit@{K} per request (NDCG@{K} in brackets), then per user (each user's hit rate "
            f"averaged over users);\n  {len(lists):,} replayed in {seconds:.0f} s in process"
        )
        if args.http_check:
            over_http = http_check(
                state / "http", log, args.model, args.params, rest, args.http_check
            )
            same = sum(a == b for a, b in zip(over_http, lists, strict=False))
            print(f"  HTTP check: {same} of {len(over_http)} lists equal the in-process ones")
            verdicts.check(
                "the HTTP run answers the lists the in-process replay did",
                f"{same} of {len(over_http)}",
                same == len(over_http),
            )
        if args.model == "ease" and args.recency > 0:
            recency_beside(state, log, args, rest, result, verdicts)
    judge(result, verdicts)
    return verdicts.finish()


def recency_beside(
    state: Path,
    log: Path,
    args: argparse.Namespace,
    rest: pd.DataFrame,
    plain: Replay,
    verdicts: Verdicts,
) -> None:
    """Replay the same events with EASE weighting recency (``--recency``), and compare."""
    params = json.loads(args.params.read_text(encoding="utf-8")) if args.params else {}
    params.setdefault("ease", {})["recency"] = args.recency
    path = state / "recency.json"
    path.write_text(json.dumps(params), encoding="utf-8")
    (state / "recency").mkdir()
    app = create_app(settings_for(state / "recency", log, "ease", path))
    runtime = app.extensions["recsys.runtime"]
    runtime.init()
    runtime.start()
    result, _ = replay(app, rest, args.max_events)
    runtime.close()
    print(
        f"\nthe same replay, EASE with recency {args.recency:g} (a user's k-th most recent "
        f"film weighs exp(-k / {args.recency:g})):"
    )
    print_table(result)
    for group in (TRAINED, NEW_3_PLUS):
        for mode in ("fold-in", "session"):
            verdicts.inform(
                f"{group}, {mode}: hit@{K} per user with recency {args.recency:g} / without",
                f"{result.user_hit(group, mode):.3f} / {plain.user_hit(group, mode):.3f} = "
                f"{result.user_hit(group, mode) / plain.user_hit(group, mode):.2f}x "
                f"({result.hit(group, mode) / plain.hit(group, mode):.2f}x per request)",
            )


def print_table(result: Replay) -> None:
    """Print hit@K (NDCG@K) per request and the per-user hit@K of every group and mode."""
    print(f"  {'group':<15}{'requests':>9}{'users':>6}" + "".join(f"{m:>17}" for m in MODES))
    for group in (TRAINED, *NEW_GROUPS, NEW_3_PLUS, NEW_ALL):
        tally = result.tallies[(group, "fold-in")]
        requests = max(1, tally.requests)
        cells = "".join(
            f"{result.hit(group, m):>9.3f} ({result.tallies[(group, m)].ndcg / requests:.3f})"
            for m in MODES
        )
        print(f"  {group:<15}{tally.requests:>9,}{len(tally.users):>6}{cells}")
        users = "".join(f"{result.user_hit(group, m):>17.3f}" for m in MODES)
        print(f"  {'  per user':<30}{users}")


def judge(result: Replay, verdicts: Verdicts) -> None:
    """Judge the targets on per-user hit@K (each user counts once), per request beside."""

    targets = [
        (
            f"users first seen after the cut, 3+ events so far: fold-in >= 2.0x popularity's "
            f"hit@{K}",
            (NEW_3_PLUS, "fold-in", "popularity", 2.0),
        ),
        (
            f"users present in training: fold-in >= today's hit@{K}",
            (TRAINED, "fold-in", "today", 1.0),
        ),
        (
            f"sessions of users first seen after the cut within 10% of their fold-in hit@{K}",
            (NEW_ALL, "session", "fold-in", 0.9),
        ),
    ]
    for target, (group, mode, reference, least) in targets:
        if not result.tallies[(group, mode)].hits and not result.tallies[(group, reference)].hits:
            verdicts.not_run(target, "no hit in this replay's group (replay more events)")
            continue
        per_user = result.user_hit(group, mode) / result.user_hit(group, reference)
        per_request = result.hit(group, mode) / result.hit(group, reference)
        shown = f"{per_user:.2f}x ({per_request:.2f}x per request)"
        verdicts.check(target, shown, per_user >= least)


if __name__ == "__main__":
    sys.exit(main())
