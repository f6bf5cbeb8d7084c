"""xmonbridge: phone and SMS alerting for Nagios-based monitors through Twilio."""

from __future__ import annotations

import os

# Not typing.TYPE_CHECKING: importing typing alone costs `xmonbridge notify` milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the application: config, extensions, blueprints and CLI."""
    # Imported here, not at the top: `import xmonbridge` stays light, so `xmonbridge notify`
    # (xmonbridge/entry.py) starts without loading Flask.
    from pathlib import Path

    from flask import Flask

    instance = os.environ.get("XMONBRIDGE_INSTANCE")
    app = Flask(
        __name__,
        instance_relative_config=True,
        instance_path=str(Path(instance).resolve()) if instance else None,
    )
    from .config import ConfigError, Defaults, check_numbers

    app.config.from_object(Defaults)
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        for name in ("DATABASE_URL", "TWILIO_MODE", "TWILIO_API_BASE"):
            if os.environ.get(name):
                key = "SQLALCHEMY_DATABASE_URI" if name == "DATABASE_URL" else name
                app.config[key] = os.environ[name]
        app.config.from_prefixed_env("XMONBRIDGE")
    else:
        app.config.from_mapping(test_config)

    from . import keys

    keys.load(app)
    # No folder and no file is created here: only `xmonbridge init` makes the instance, and
    # readiness.require() refuses to start without it (SQLite would create an empty file).
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{Path(app.instance_path) / 'xmonbridge.sqlite'}"
    check_numbers(app.config)
    if app.config["TWILIO_MODE"] not in ("simulate", "live"):
        raise ConfigError(f"TWILIO_MODE is {app.config['TWILIO_MODE']!r}; set it to 'simulate' or 'live'.")

    from . import cli, db_setup, errors, filters, headers, layout, routing
    from .extensions import bootstrap, csrf, db, login_manager, migrate

    routing.init_app(app)
    db_setup.init_app(app)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).parent / "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)
    bootstrap.init_app(app)

    filters.init_app(app)
    layout.init_app(app)
    errors.init_app(app)
    headers.init_app(app)
    cli.init_app(app)

    from .api import bp as api_bp
    from .api_tokens import bp as api_tokens_bp
    from .approvals import bp as approvals_bp
    from .auth import bp as auth_bp
    from .button_calls import bp as button_calls_bp
    from .healthz import bp as healthz_bp
    from .heartbeat_settings import bp as heartbeat_settings_bp
    from .incidents import bp as incidents_bp
    from .logs import bp as logs_bp
    from .message_templates import bp as message_templates_bp
    from .notify_settings import simple_bp, sms_bp
    from .phone_sim import bp as phone_sim_bp
    from .twilio_accounts import bp as twilio_accounts_bp
    from .users import bp as users_bp
    from .webhooks import bp as webhooks_bp
    from .xmon_settings import bp as xmon_settings_bp

    blueprints = (auth_bp, xmon_settings_bp, users_bp, twilio_accounts_bp, simple_bp, sms_bp, approvals_bp, logs_bp)
    blueprints += (api_bp, incidents_bp, webhooks_bp, api_tokens_bp)
    blueprints += (button_calls_bp, message_templates_bp, healthz_bp)
    blueprints += (heartbeat_settings_bp, phone_sim_bp)
    for bp in blueprints:
        app.register_blueprint(bp)

    hops = int(app.config["PROXY_FIX_X_FOR"])
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_prefix=hops)  # type: ignore[method-assign]
    return app
