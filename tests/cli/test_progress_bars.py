"""Long command-line jobs show tqdm progress bars on a terminal, and nothing elsewhere."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

from recsys.data.catalog import load_catalog
from recsys.data.charts import write_eda_report
from recsys.data.interactions import load_interactions
from recsys.training.train import TrainingSettings, train_and_publish
from tests.builders import BUNDLED_LOG, ROOT, runtime_of


class Terminal(io.StringIO):
    """Standard error as a terminal: tqdm draws its bar only on one."""

    def isatty(self) -> bool:
        return True


@contextlib.contextmanager
def on_a_terminal() -> Iterator[Terminal]:
    # Inside the test itself: pytest's capture resets sys.stderr between fixtures and the test.
    screen = Terminal()
    with contextlib.redirect_stderr(screen):
        yield screen


def test_training_shows_each_step_it_takes(app):
    runtime = runtime_of(app)
    with on_a_terminal() as terminal:
        train_and_publish(runtime.store, runtime.registry, TrainingSettings("svd"), progress=True)
    shown = terminal.getvalue()
    for step in ("reading the store", "measuring svd on the holdout", "fitting svd on all data"):
        assert step in shown
    assert "training: 100%" in shown and "4/4" in shown


def test_automatic_selection_counts_one_step_per_candidate_and_the_champion(app):
    runtime = runtime_of(app)
    with on_a_terminal() as terminal:
        train_and_publish(runtime.store, runtime.registry, TrainingSettings("auto"), progress=True)
    shown = terminal.getvalue()
    assert "measuring ease on validation" in shown
    # read, five candidates on validation, the champion on the holdout, its fit, publish
    assert "9/9" in shown


def test_training_without_progress_prints_nothing(app):
    runtime = runtime_of(app)
    with on_a_terminal() as terminal:
        train_and_publish(runtime.store, runtime.registry, TrainingSettings("popular"))
    assert terminal.getvalue() == ""


def test_the_eda_report_counts_the_charts_it_draws(tmp_path):
    log = load_interactions(BUNDLED_LOG)
    with on_a_terminal() as terminal:
        write_eda_report(tmp_path, log, load_catalog(ROOT / "products.csv"), progress=True)
    assert "drawing: 100%" in terminal.getvalue() and "5/5" in terminal.getvalue()
