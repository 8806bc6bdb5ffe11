"""API keys: who may call which endpoint, how refusals look, and that keys stay secret."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import runpy
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest

from recsys.config import Settings, SettingsError, api_keys
from recsys.config.api_keys import KeyRing
from recsys.config.open_bind import open_bind_refusal
from recsys.web.auth import OPEN_PATHS, declared_role, requires
from recsys.web.context import settings_of
from tests.builders import ROOT, AppFactory

# The keys the callers hold; the service is configured with their digests only.
KEYS = {
    "read": "test-read-key-0123456789",
    "ingest": "test-ingest-key-0123456789",
    "admin": "test-admin-key-0123456789",
}
EVENT = {"user_id": 7, "product_id": 3, "purchased": 0}
NEW_PRODUCT = {"product_id": 30, "name": "Grey Scarf", "category": "Fashion", "price": 12.0}
PRODUCT_RULE = "/products/<int(min=1, max=9223372036854775807):product_id>"
HISTORY_RULE = "/users/<int(min=1, max=9223372036854775807):user_id>/history"
USER_RULE = "/users/<int(min=1, max=9223372036854775807):user_id>"
EXPORT_RULE = "/users/<int(min=1, max=9223372036854775807):user_id>/export"


def sha256_hex(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


API_KEYS = ",".join(f"{role}:{sha256_hex(key)}" for role, key in KEYS.items())


def with_key(who: str | None) -> dict[str, str]:
    return {"X-API-Key": KEYS[who]} if who else {}


@pytest.fixture(scope="module")
def keyed_factory(tmp_path_factory):
    """A factory of apps over one store, configured with the three keys above."""
    state = tmp_path_factory.mktemp("keyed_app")
    factory = AppFactory(f"sqlite:///{state / 'events.db'}", state / "models", API_KEYS=API_KEYS)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def keyed_app(keyed_factory):
    return keyed_factory()


@pytest.fixture()
def keyed_client(keyed_app):
    return keyed_app.test_client()


# -- which role each endpoint needs ------------------------------------------------------------

# Every route of the service: how to call it (the body is JSON). A route with
# several methods has one entry per method, "METHOD route" for the others.
ENDPOINTS = {
    "/recommend": ("GET", "/recommend?user_id=1", None),
    "/popular": ("GET", "/popular", None),
    "/interactions": ("POST", "/interactions", EVENT),
    "/admin/retrain": ("POST", "/admin/retrain", None),
    "/admin/jobs/<job_id>": ("GET", "/admin/jobs/no-such-job", None),
    "/model": ("GET", "/model", None),
    "/healthz": ("GET", "/healthz", None),
    "/readyz": ("GET", "/readyz", None),
    "/metrics": ("GET", "/metrics", None),
    "/similar": ("GET", "/similar?product_id=3", None),
    "/recommend/session": ("POST", "/recommend/session", {"items": [3, 7]}),
    "/products": ("GET", "/products", None),
    "PUT /products": ("PUT", "/products", [NEW_PRODUCT]),
    PRODUCT_RULE: ("GET", "/products/3", None),
    HISTORY_RULE: ("GET", "/users/17/history", None),
    # A user the store does not know: the admin gets past the check to a 404.
    "DELETE " + USER_RULE: ("DELETE", "/users/999999", None),
    EXPORT_RULE: ("GET", "/users/999999/export", None),
    "/openapi.json": ("GET", "/openapi.json", None),
    "/docs": ("GET", "/docs", None),
    "/docs/<asset>": ("GET", "/docs/swagger-ui.css", None),
    "/": ("GET", "/", None),
    "/dashboard/charts/<name>.png": ("GET", "/dashboard/charts/most_clicked.png", None),
    "/dashboard/session": ("POST", "/dashboard/session", {"api_key": KEYS["read"]}),
    "DELETE /dashboard/session": ("DELETE", "/dashboard/session", None),
    "/dashboard/static/<path:filename>": ("GET", "/dashboard/static/dashboard.css", None),
    "/stats": ("GET", "/stats", None),
    "/experiments": ("GET", "/experiments", None),
    "POST /experiments": ("POST", "/experiments", {"name": "x"}),
    "/experiments/<name>": ("GET", "/experiments/none", None),
    "/experiments/<name>/start": ("POST", "/experiments/none/start", None),
    "/experiments/<name>/stop": ("POST", "/experiments/none/stop", None),
    "/experiments/<name>/report": ("GET", "/experiments/none/report", None),
}
# fmt: off
ROLE_MATRIX = [
    # route                  no key  read  ingest  admin
    ("/recommend",             401,  200,   403,   200),
    ("/popular",               401,  200,   403,   200),
    ("/interactions",          401,  403,   201,   201),
    ("/admin/retrain",         401,  403,   403,   202),
    ("/admin/jobs/<job_id>",   401,  403,   403,   404),  # 404: past the check, no such job
    ("/model",                 401,  403,   403,   200),
    ("/healthz",               200,  200,   200,   200),
    ("/readyz",                200,  200,   200,   200),
    ("/metrics",               200,  200,   200,   200),  # RECSYS_METRICS_OPEN=1, the default
    ("/similar",               401,  200,   403,   200),
    ("/recommend/session",     401,  200,   403,   200),
    ("/products",              401,  200,   403,   200),
    ("PUT /products",          401,  403,   200,   200),
    (PRODUCT_RULE,             401,  200,   403,   200),
    (HISTORY_RULE,             401,  200,   403,   200),
    ("DELETE " + USER_RULE,    401,  403,   403,   404),  # 404: past the check, no such user
    (EXPORT_RULE,              401,  403,   403,   404),
    ("/openapi.json",          200,  200,   200,   200),
    ("/docs",                  200,  200,   200,   200),
    ("/docs/<asset>",          200,  200,   200,   200),
    ("/",                      401,  200,   403,   200),  # 401/403: the sign-in page
    ("/dashboard/charts/<name>.png", 401, 200, 403, 200),
    ("/dashboard/session",     204,  204,   204,   204),  # signs in with the key in its body
    ("DELETE /dashboard/session", 204, 204, 204, 204),
    ("/dashboard/static/<path:filename>", 200, 200, 200, 200),
    ("/stats",                 401,  200,   403,   200),
    ("/experiments",           401,  403,   403,   200),
    ("POST /experiments",      401,  403,   403,   400),  # 400: past the check, bad definition
    ("/experiments/<name>",    401,  403,   403,   404),  # 404: past the check, no such one
    ("/experiments/<name>/start", 401, 403, 403,   404),
    ("/experiments/<name>/stop",  401, 403, 403,   404),
    ("/experiments/<name>/report", 401, 403, 403,  404),
]
# fmt: on
CALLERS = (None, "read", "ingest", "admin")


@pytest.mark.parametrize(
    ("route", "who", "status"),
    [
        pytest.param(route, who, status, id=f"{route} {who or 'no key'}")
        for route, *statuses in ROLE_MATRIX
        for who, status in zip(CALLERS, statuses, strict=True)
    ],
)
def test_each_endpoint_answers_each_role_as_the_matrix_says(keyed_client, route, who, status):
    method, url, body = ENDPOINTS[route]
    response = keyed_client.open(url, method=method, json=body, headers=with_key(who))
    assert response.status_code == status, response.get_json()


def test_the_matrix_covers_every_route_of_the_service(keyed_app):
    routes = {
        (method, rule.rule)
        for rule in keyed_app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    called = {(method, name[name.index("/") :]) for name, (method, _, _) in ENDPOINTS.items()}
    assert routes == called
    assert set(ENDPOINTS) == {row[0] for row in ROLE_MATRIX}


def test_every_route_declares_a_role_or_is_in_the_open_list(keyed_app):
    # A new endpoint without @requires(...) fails here rather than going out open.
    undeclared = [
        rule.rule
        for rule in keyed_app.url_map.iter_rules()
        if rule.rule not in OPEN_PATHS
        and declared_role(keyed_app.view_functions[rule.endpoint]) is None
    ]
    assert undeclared == []


def test_a_route_that_declares_nothing_needs_admin(keyed_factory):
    app = keyed_factory(init=False)
    app.add_url_rule("/forgotten", "forgotten", lambda: {"ok": True})
    client = app.test_client()
    assert client.get("/forgotten", headers=with_key("read")).status_code == 403
    assert client.get("/forgotten", headers=with_key("admin")).status_code == 200


def test_an_unknown_role_is_refused_when_the_view_is_declared():
    with pytest.raises(ValueError, match="unknown role 'raed'"):
        requires("raed")


def test_a_key_with_several_roles_may_do_what_each_allows(keyed_factory):
    key = "test-read-and-ingest-key"
    app = keyed_factory(API_KEYS=f"ingest+read:{sha256_hex(key)}")
    client = app.test_client()
    headers = {"X-API-Key": key}
    assert client.get("/popular", headers=headers).status_code == 200
    assert client.post("/interactions", json=EVENT, headers=headers).status_code == 201
    assert client.get("/model", headers=headers).status_code == 403


@pytest.mark.parametrize(("metrics_open", "who", "status"), [
    (True, None, 200),
    (False, None, 401),
    (False, "read", 403),
    (False, "admin", 200),
])  # fmt: skip
def test_metrics_is_open_unless_metrics_open_is_off(keyed_factory, metrics_open, who, status):
    app = keyed_factory(init=False, METRICS_OPEN=metrics_open)
    app.add_url_rule("/metrics", "metrics", lambda: "recsys_up 1\n")
    assert app.test_client().get("/metrics", headers=with_key(who)).status_code == status


def test_without_keys_every_endpoint_is_open(client):
    assert client.get("/model").status_code == 200
    assert client.post("/interactions", json=EVENT).status_code == 201


# -- what a refusal looks like -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"X-API-Key": ""}, "missing_api_key"),
        ({"X-API-Key": "not-a-key"}, "invalid_api_key"),
        ({"X-API-Key": KEYS["read"] + " "}, "invalid_api_key"),
    ],
)
def test_a_missing_or_unknown_key_is_401_with_www_authenticate(keyed_client, headers, code):
    response = keyed_client.get("/recommend?user_id=1", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "ApiKey"
    body = response.get_json()
    assert list(body) == ["error"] and sorted(body["error"]) == ["code", "message"]
    assert body["error"]["code"] == code
    assert "X-API-Key" in body["error"]["message"]


def test_a_key_without_the_role_is_403_naming_the_role_needed(keyed_client):
    response = keyed_client.post("/admin/retrain", headers=with_key("ingest"))
    assert response.status_code == 403
    assert "WWW-Authenticate" not in response.headers
    assert response.get_json() == {
        "error": {
            "code": "forbidden",
            "message": "POST /admin/retrain needs an API key with the 'admin' role; "
            "this key has ingest",
        }
    }


def test_a_refusal_names_the_route_as_the_docs_write_it_without_its_converter(keyed_client):
    response = keyed_client.delete("/users/17", headers=with_key("read"))
    assert response.status_code == 403
    assert response.get_json()["error"]["message"].startswith(
        "DELETE /users/<user_id> needs an API key with the 'admin' role"
    )


def test_a_key_is_not_taken_from_the_query_string(keyed_client):
    response = keyed_client.get(f"/popular?api_key={KEYS['read']}")
    assert response.get_json()["error"]["code"] == "missing_api_key"


# -- keys are kept and compared as digests -----------------------------------------------------


def test_the_configuration_holds_digests_never_keys(keyed_app):
    ring = settings_of(keyed_app).security.api_keys
    assert [k.digest for k in ring.keys] == [
        hashlib.sha256(key.encode()).digest() for key in KEYS.values()
    ]
    held = repr(ring) + repr(dict(keyed_app.config))
    assert not any(key in held for key in KEYS.values())


def test_a_presented_key_is_hashed_and_compared_with_every_digest(monkeypatch):
    ring = KeyRing.parse(API_KEYS)
    compared: list[tuple[bytes, bytes]] = []
    compare_digest = hmac.compare_digest

    def recording_compare(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr(api_keys.hmac, "compare_digest", recording_compare)
    found = ring.authenticate(KEYS["read"])  # the first configured key
    assert found is not None and found.roles == ("read",)
    presented = hashlib.sha256(KEYS["read"].encode()).digest()
    # No early exit: every digest is compared, the match first among them.
    assert compared == [(presented, key.digest) for key in ring.keys]


def test_a_rate_limit_counter_is_named_by_a_digest_prefix(keyed_app):
    key = settings_of(keyed_app).security.api_keys.keys[0]
    assert key.limit_key == f"key-{sha256_hex(KEYS['read'])[:16]}"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("read", "entry 1 of 1 has no ':'"),
        (f"reader:{'a' * 64}", "entry 1 of 1: unknown role 'reader'"),
        (f"read+read:{'a' * 64}", "entry 1 of 1: a role is given twice"),
        (f":{'a' * 64}", "entry 1 of 1: unknown role ''"),
        ("read:abc123", "entry 1 of 1: the digest must be 64 hex digits, got 6 characters"),
        (f"read:{'g' * 64}", "entry 1 of 1: the digest must be 64 hex digits"),
        (f"read:{'a' * 64}:fast", "entry 1 of 1: the rate must be a limit such as"),
        (f"read:{'a' * 64}:", "entry 1 of 1: the rate must be a limit such as"),
        (f"read:{'a' * 64}:0 per second", "(amounts from 1)"),
        (f"read:{'a' * 64},,admin:{'b' * 64}", "entry 2 of 3 is empty"),
        (f"read:{'a' * 64},admin:{'A' * 64}", "entry 2 of 2: the same digest is configured twice"),
        # A key pasted instead of its digest: named by its length, never shown.
        (f"admin:{KEYS['admin']}", "got 25 characters (configure the SHA-256"),
    ],
)
def test_a_bad_api_keys_setting_is_one_line_that_never_repeats_the_value(tmp_path, value, problem):
    with pytest.raises(SettingsError) as raised:
        Settings.load({"RECSYS_API_KEYS": value}, None, tmp_path)
    message = str(raised.value)
    assert message.startswith("RECSYS_API_KEYS: ")
    assert problem in message
    assert "\n" not in message
    secret = value.rpartition(":")[2]
    assert len(secret) < 16 or secret not in message


def test_api_keys_entries_may_be_spaced_and_hold_several_roles(tmp_path):
    settings = Settings.load(
        {"RECSYS_API_KEYS": f" admin+ingest : {'A' * 64} ,\n read:{'b' * 64}\n"}, None, tmp_path
    )
    keys = settings.security.api_keys.keys
    assert [k.roles for k in keys] == [("ingest", "admin"), ("read",)]
    assert keys[0].digest == bytes.fromhex("a" * 64)


# -- flask create-key --------------------------------------------------------------------------


def create_key(runner, *roles: str) -> tuple[str, str]:
    """Run `flask create-key` with these roles; return the key and the configuration entry."""
    result = runner.invoke(args=["create-key", *[arg for r in roles for arg in ("--role", r)]])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 4, result.output
    return lines[1].strip(), lines[3].strip()


def test_create_key_prints_a_key_whose_configuration_line_works(keyed_factory):
    runner = keyed_factory(init=False).test_cli_runner()
    key, entry = create_key(runner, "ingest", "read")
    assert len(key) == 43  # secrets.token_urlsafe(32)
    assert entry == f"read+ingest:{sha256_hex(key)}"
    # Appended to the existing setting, as the command says.
    client = keyed_factory(API_KEYS=f"{API_KEYS},{entry}").test_client()
    assert client.get("/popular", headers={"X-API-Key": key}).status_code == 200
    assert client.post("/interactions", json=EVENT, headers={"X-API-Key": key}).status_code == 201
    assert client.get("/model", headers={"X-API-Key": key}).status_code == 403


def test_create_key_with_a_rate_prints_an_entry_that_carries_it(keyed_factory):
    runner = keyed_factory(init=False).test_cli_runner()
    result = runner.invoke(args=["create-key", "--role", "read", "--rate", " 2000 per second "])
    assert result.exit_code == 0, result.output
    key, entry = result.output.splitlines()[1].strip(), result.output.splitlines()[3].strip()
    assert entry == f"read:{sha256_hex(key)}:2000 per second"
    settings = Settings.load({"RECSYS_API_KEYS": entry}, None, "instance")
    assert settings.security.api_keys.keys[0].rate == "2000 per second"


def test_create_key_makes_a_new_key_every_time(keyed_factory):
    runner = keyed_factory(init=False).test_cli_runner()
    assert create_key(runner, "admin")[0] != create_key(runner, "admin")[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create-key"], "Missing option '--role'"),
        (["create-key", "--role", "root"], "'root' is not one of 'read', 'ingest', 'admin'"),
        (["create-key", "--role", "read", "--rate", "fast"], "a limit such as '2000 per second'"),
        (["create-key", "--role", "read", "--rate", "0 per second"], "amounts from 1"),
    ],
)
def test_create_key_needs_known_roles(keyed_factory, args, message):
    result = keyed_factory(init=False).test_cli_runner().invoke(args=args)
    assert result.exit_code == 2
    assert message in result.output


# -- keys never reach a log --------------------------------------------------------------------


def test_no_log_record_holds_a_presented_key(keyed_factory, caplog):
    client = keyed_factory(RATE_LIMIT="1 per minute").test_client()
    wrong = "a-wrong-key-that-must-not-be-logged"
    with caplog.at_level(logging.DEBUG):
        client.get("/popular", headers={"X-API-Key": wrong})
        client.get("/model", headers=with_key("read"))  # 403
        client.get("/popular", headers=with_key("read"))
        assert client.get("/popular", headers=with_key("read")).status_code == 429
    # The limiter names the key by its digest prefix.
    limit_key = f"key-{sha256_hex(KEYS['read'])[:16]}"
    assert any(limit_key in r.getMessage() for r in caplog.records if r.name == "recsys.web.limits")
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert wrong not in logged
    assert KEYS["read"] not in logged


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _call(url: str, key: str) -> int:
    request = urllib.request.Request(url, headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "app.py", "--port", "{port}"],
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            "127.0.0.1:{port}",
            "--workers",
            "1",
            "--access-logfile",
            "-",
            "app:create_app()",
        ],
    ],
    ids=["python app.py", "gunicorn"],
)
def test_the_servers_access_and_error_logs_hold_no_key(tmp_path, command):
    port = _free_port()
    env = {
        **os.environ,
        "RECSYS_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
        "RECSYS_MODEL_DIR": str(tmp_path / "models"),
        "RECSYS_API_KEYS": API_KEYS,
    }
    log = tmp_path / "server.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [part.format(port=port) for part in command],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        wrong = "a-wrong-key-that-must-not-be-logged"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{base}/healthz", timeout=5).close()
                    break
                except (urllib.error.URLError, ConnectionError):
                    assert server.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "the server did not start within 60 s"
                    time.sleep(0.2)
            assert _call(f"{base}/popular", wrong) == 401
            assert _call(f"{base}/popular", KEYS["read"]) == 200
            assert _call(f"{base}/model", KEYS["read"]) == 403
        finally:
            server.terminate()
            server.wait(timeout=30)
    text = log.read_text()
    assert "/popular" in text, text  # the access log was written
    assert wrong not in text and KEYS["read"] not in text


# -- no keys: loopback only, unless allowed ----------------------------------------------------


@pytest.mark.parametrize(
    ("addresses", "refused"),
    [
        (["127.0.0.1"], False),
        (["localhost:5000"], False),
        (["127.0.0.2:8000"], False),
        (["[::1]:8000"], False),
        (["::1"], False),
        (["unix:/run/recsys.sock"], False),
        (["0.0.0.0"], True),
        (["0.0.0.0:8000"], True),
        ([":8000"], True),  # an empty host listens on every interface
        (["[::]:8000"], True),
        (["192.168.1.5:8000"], True),
        (["shop.example:8000"], True),  # a name may resolve anywhere
        (["fd://3"], True),
        (["127.0.0.1:8000", "0.0.0.0:8001"], True),
    ],
)
def test_an_open_service_may_listen_on_loopback_only(addresses, refused):
    refusal = open_bind_refusal(False, False, addresses)
    assert (refusal is not None) == refused
    if refused:
        assert "RECSYS_API_KEYS" in refusal and "RECSYS_ALLOW_OPEN=1" in refusal


def test_keys_or_allow_open_let_the_service_listen_anywhere():
    assert open_bind_refusal(True, False, ["0.0.0.0:8000"]) is None
    assert open_bind_refusal(False, True, ["0.0.0.0:8000"]) is None


def _open_env() -> dict[str, str]:
    """Return the environment without keys and without ALLOW_OPEN."""
    return {
        k: v for k, v in os.environ.items() if k not in ("RECSYS_API_KEYS", "RECSYS_ALLOW_OPEN")
    }


@pytest.mark.slow
def test_python_app_py_refuses_a_public_address_without_keys():
    result = subprocess.run(
        [sys.executable, "app.py", "--host", "0.0.0.0"],
        cwd=ROOT,
        env=_open_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: no API keys are configured (RECSYS_API_KEYS)")
    assert "0.0.0.0" in lines[0]


@pytest.mark.slow
def test_gunicorn_refuses_a_public_bind_without_keys():
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--bind", f"0.0.0.0:{_free_port()}", "app:create_app()"],
        cwd=ROOT,
        env=_open_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: no API keys are configured (RECSYS_API_KEYS)")


def _gunicorn_hook():
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))["refuse_open_public_bind"]


def _server(*binds: str) -> SimpleNamespace:
    """A stand-in for gunicorn's arbiter: its binds, and the app it preloaded."""
    from app import create_app

    app = create_app()
    return SimpleNamespace(
        cfg=SimpleNamespace(bind=list(binds)), app=SimpleNamespace(wsgi=lambda: app)
    )


def test_gunicorn_serves_openly_on_a_public_bind_when_allowed(monkeypatch, caplog):
    monkeypatch.delenv("RECSYS_API_KEYS", raising=False)
    monkeypatch.setenv("RECSYS_ALLOW_OPEN", "1")
    with caplog.at_level(logging.WARNING, logger="recsys"):
        _gunicorn_hook()(_server("0.0.0.0:8000"))  # returns: no SystemExit
    assert [r.getMessage() for r in caplog.records] == [
        "no API keys are configured (RECSYS_API_KEYS): every endpoint is open to anyone "
        "who can reach 0.0.0.0:8000"
    ]


def test_an_open_service_on_loopback_warns_once_at_start(monkeypatch, caplog):
    monkeypatch.delenv("RECSYS_API_KEYS", raising=False)
    with caplog.at_level(logging.WARNING, logger="recsys"):
        _gunicorn_hook()(_server("127.0.0.1:8000"))
    assert len(caplog.records) == 1
    assert "every endpoint is open" in caplog.records[0].getMessage()


def test_a_service_with_keys_does_not_warn(monkeypatch, caplog):
    monkeypatch.setenv("RECSYS_API_KEYS", API_KEYS)
    with caplog.at_level(logging.WARNING, logger="recsys"):
        _gunicorn_hook()(_server("0.0.0.0:8000"))
    assert caplog.records == []


# -- cross-site form posts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"],
)
@pytest.mark.parametrize("path", ["/interactions", "/admin/retrain"])
def test_a_browser_form_cannot_post_even_to_an_open_service(app, client, path, content_type):
    before = app.extensions["recsys.runtime"].store.counts()
    response = client.post(
        path, data="user_id=7&product_id=3&purchased=0", content_type=content_type
    )
    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"
    assert app.extensions["recsys.runtime"].store.counts() == before
