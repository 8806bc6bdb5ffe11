"""Stage 6: the HTTP layer (the only Flask code): blueprints, parameters, errors, auth, commands.

``init_app`` wires one ``ServingRuntime`` into an app the flaskr way: it
registers blueprints, error handlers, the API-key check, rate limits and
``flask`` commands, and starts nothing. The runtime starts serving at the
process's first request.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from recsys.runtime import ServingRuntime
from recsys.web import (
    admin,
    answer_headers,
    catalog,
    commands,
    dashboard,
    errors,
    experiments,
    health,
    history,
    interactions,
    json_provider,
    limits,
    openapi,
    prometheus,
    recommend,
    request_hooks,
    sessions,
    similar,
    users,
)

RUNTIME_KEY = "recsys.runtime"


def init_app(app: Flask, runtime: ServingRuntime) -> None:
    """Attach the runtime and register everything the service answers.

    Args:
        app: The Flask application, its config already set.
        runtime: The runtime the views call (not started).
    """
    app.extensions[RUNTIME_KEY] = runtime
    app.json = json_provider.FiniteJSONProvider(app)
    # Around Flask: every request's id, every answer's id and security headers.
    app.wsgi_app = answer_headers.AnswerHeaders(app.wsgi_app)  # type: ignore[method-assign]
    proxies = runtime.settings.server.trusted_proxies
    if proxies:
        # The client's address (and scheme) as the proxies in front saw it,
        # for the per-address rate limit and the access log.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies
        )
    prometheus.init_app(app)
    errors.init_app(app)
    # Before the limiter's hooks: it counts a request against the key it was let in with.
    request_hooks.init_app(app)
    limits.init_app(app)
    app.register_blueprint(health.bp)
    recommend.init_app(app)
    for blueprint in (interactions.bp, admin.bp):
        app.register_blueprint(blueprint)
    for blueprint in (sessions.bp, similar.bp, catalog.bp, history.bp, users.bp):
        app.register_blueprint(blueprint)
    for blueprint in (dashboard.bp, experiments.bp):
        app.register_blueprint(blueprint)
    openapi.init_app(app)
    commands.init_app(app)
