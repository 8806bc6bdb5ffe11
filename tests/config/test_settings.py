"""The settings are typed: a mistyped name fails type checking or construction, not a request."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from pydantic import ValidationError

from recsys.config import (
    SETTINGS,
    CacheSection,
    ServerSection,
    Settings,
    SettingsError,
    TrainingSection,
)
from tests.builders import ROOT

# Each line that mistypes a name ends with the error mypy must report for it.
MISTYPED = textwrap.dedent(
    """
    from recsys.config import ServerSection, Settings


    def show(settings: Settings) -> None:
        print(settings.server.workers, settings.jobs.lease_seconds, settings.redis.timeout_seconds)
        print(settings.cache.ttl_secods)  # "CacheSection" has no attribute "ttl_secods"
        print(settings.caches.key_prefix)  # "Settings" has no attribute "caches"
        print(settings.server.port + "s")  # Unsupported operand types for + ("int" and "str")
        print(ServerSection(wrokers=3))  # Unexpected keyword argument "wrokers" for "ServerSection"
    """
)


@pytest.mark.slow
def test_mypy_reports_each_mistyped_setting_name_and_nothing_in_the_strict_settings(tmp_path):
    snippet = tmp_path / "uses_settings.py"
    snippet.write_text(MISTYPED)
    expected = {
        (number, line.split("  # ")[1])
        for number, line in enumerate(MISTYPED.splitlines(), start=1)
        if "  # " in line
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",
            "--ignore-missing-imports",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "mypy_cache"),
            "recsys/config",
            str(snippet),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    reported = {
        int(line.split(":")[1]): line.split(": error: ")[1]
        for line in result.stdout.splitlines()
        if line.startswith(str(snippet)) and ": error: " in line
    }
    assert len(result.stdout.splitlines()) == len(expected), result.stdout + result.stderr
    assert sorted(reported) == sorted(number for number, _ in expected), result.stdout
    assert all(reported[number].startswith(message) for number, message in expected)


@pytest.mark.parametrize(
    ("section", "mistyped"),
    [(ServerSection, "wrokers"), (CacheSection, "ttl_secods"), (TrainingSection, "MODEL")],
)
def test_a_section_refuses_a_mistyped_name_when_built(section, mistyped):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        section(**{mistyped: 3})


def test_a_section_made_directly_reads_the_environment(monkeypatch):
    monkeypatch.setenv("RECSYS_WORKERS", "3")
    monkeypatch.setenv("RECSYS_BIND", "[::1]:8001,unix:/run/recsys.sock")
    server = ServerSection()
    assert (server.workers, server.threads) == (3, 8)
    assert server.bind == ("[::1]:8001", "unix:/run/recsys.sock")


def test_flat_config_names_reach_their_sections_and_flasks_own_keys_stay_aside(tmp_path):
    settings = Settings.load(
        {"RECSYS_CACHE": "1"},
        {"MODEL_DIR": str(tmp_path / "models"), "CACHE": "0", "TESTING": True},
        tmp_path,
    )
    assert settings.registry.model_dir == tmp_path / "models"
    assert settings.cache.enabled is False  # the config mapping wins over the environment
    assert settings.extra == {"TESTING": True}


@pytest.mark.parametrize(
    ("environ", "config", "message"),
    [
        ({"RECSYS_PORT": "0"}, None, "RECSYS_PORT: expected an integer from 1 to 65535, got '0'"),
        ({"PORT": "http"}, None, "PORT: expected an integer from 1 to 65535, got 'http'"),
        (
            {},
            {"CACHE_TTL_SECONDS": 0},
            "CACHE_TTL_SECONDS: expected an integer from 1 to 1000000, got 0",
        ),
        (
            {"RECSYS_CACHE_TTL_SECONDS": "99999999999"},
            None,
            "RECSYS_CACHE_TTL_SECONDS: expected an integer from 1 to 1000000, got '99999999999'",
        ),
        (
            {"RECSYS_LOG_LEVEL": "DEBG"},
            None,
            "RECSYS_LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'DEBG'",
        ),
        (
            {"RECSYS_CACHE": "maybe"},
            None,
            "RECSYS_CACHE: expected 1 or 0 (true/false, yes/no, on/off), got 'maybe'",
        ),
        (
            {"RECSYS_TRAINING_MODE": "cron"},
            None,
            "RECSYS_TRAINING_MODE: expected one of thread, worker, got 'cron'",
        ),
        (
            {"RECSYS_AB_ATTRIBUTION_HOURS": "inf"},
            None,
            "RECSYS_AB_ATTRIBUTION_HOURS: expected a number > 0 and at most 1000000, got 'inf'",
        ),
        (
            {"RECSYS_REDIS_TIMEOUT_SECONDS": "1e10"},
            None,
            "RECSYS_REDIS_TIMEOUT_SECONDS: expected a number > 0 and at most 1000000, got '1e10'",
        ),
        (
            {"RECSYS_MODEL_REFRESH_SECONDS": "1e300"},
            None,
            "RECSYS_MODEL_REFRESH_SECONDS: expected a number from 0 to 1000000, got '1e300'",
        ),
        (
            {"RECSYS_RETRAIN_EVERY_MINUTES": "2000000"},
            None,
            "RECSYS_RETRAIN_EVERY_MINUTES: expected a number > 0 and at most 1000000, or 0 for "
            "off, got '2000000'",
        ),
        (
            {"RECSYS_EVENT_RETENTION_DAYS": "800000"},
            None,
            "RECSYS_EVENT_RETENTION_DAYS: expected an integer from 1 to 36500, or 0 for off, "
            "got '800000'",
        ),
        (
            {"RECSYS_RETRAIN_EVERY_EVENTS": "-5"},
            None,
            "RECSYS_RETRAIN_EVERY_EVENTS: expected an integer from 1 up, or 0 for off, got '-5'",
        ),
        (
            {"RECSYS_EXPLORATION": "1.5"},
            None,
            "RECSYS_EXPLORATION: expected a number from 0 to 1, or 0 for off, got '1.5'",
        ),
        (
            {"RECSYS_EVENT_WEIGHTS": "dislike=2"},
            None,
            "RECSYS_EVENT_WEIGHTS: dislike must be a finite number <= 0, got 2.0; expected "
            "comma-separated TYPE=POINTS pairs such as 'purchase=4,dislike=-3' (TYPE one of "
            "view, click, cart, purchase, rating, dislike; points >= 0, a dislike's <= 0)",
        ),
        (
            {"RECSYS_CLICK_WEIGHT": "1"},
            None,
            "RECSYS_CLICK_WEIGHT is no more: set RECSYS_EVENT_WEIGHTS=click=POINTS instead",
        ),
        (
            {},
            {"PURCHASE_WEIGHT": 2},
            "RECSYS_PURCHASE_WEIGHT is no more: set RECSYS_EVENT_WEIGHTS=purchase=POINTS instead "
            "(a purchase's whole points: the old click and purchase weights added)",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_where_it_came_from(tmp_path, environ, config, message):
    with pytest.raises(SettingsError) as raised:
        Settings.load(environ, config, tmp_path)
    assert str(raised.value) == message


@pytest.mark.parametrize(("value", "share"), [("0.25", 0.25), ("0", 0.0), ("off", 0.0), ("", 0.0)])
def test_the_exploration_share_is_a_fraction_and_0_or_empty_turns_it_off(tmp_path, value, share):
    settings = Settings.load({"RECSYS_EXPLORATION": value}, None, tmp_path)
    assert settings.exploration.share == share


def test_every_setting_is_read_from_a_variable_of_its_own():
    variables = [name for s in SETTINGS for name in (s.env_name, *s.also_env)]
    assert len(variables) == len(set(variables))
    assert all(name.startswith("RECSYS_") for name in (s.env_name for s in SETTINGS))


def test_event_weights_name_the_types_they_change_and_keep_the_other_defaults(tmp_path):
    environ = {"RECSYS_EVENT_WEIGHTS": " purchase=5, dislike=-10 "}
    weights = Settings.load(environ, None, tmp_path).training.event_weights
    assert (weights.purchase, weights.dislike, weights.view, weights.click) == (5, -10, 0.5, 1)
