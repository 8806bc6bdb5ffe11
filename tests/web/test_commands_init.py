"""``flask --app app init`` says which log it filled the empty store from."""

from __future__ import annotations

import shutil

from tests.builders import BUNDLED_LOG, AppFactory


def init_says(tmp_path, data_path) -> str:
    apps = AppFactory(f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "models", MODEL="popular")
    app = apps(init=False, DATA_PATH=str(data_path))
    try:
        result = app.test_cli_runner().invoke(args=["init"])
    finally:
        apps.close()
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_init_over_the_bundled_log_says_so(tmp_path):
    assert init_says(tmp_path, BUNDLED_LOG).endswith(", store filled from the bundled log")


def test_init_over_another_log_names_its_file(tmp_path):
    log = tmp_path / "shop.csv"
    shutil.copyfile(BUNDLED_LOG, log)
    assert init_says(tmp_path, log).endswith(f", store filled from {log}")
