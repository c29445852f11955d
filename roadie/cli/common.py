"""What every verb shares: --app and --database-url, loading the app, printing."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click
from rich.console import Console

from roadie.app import App
from roadie.errors import InvalidInput


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="roadie")
def cli() -> None:
    """roadie: background jobs that survive crashes, on SQLite or PostgreSQL."""


def app_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--app (or ROADIE_APP) and --database-url (or ROADIE_DATABASE_URL), on every verb."""
    fn = click.option(
        "--database-url",
        default=None,
        metavar="URL",
        help="sqlite:///file.db or postgresql://...; wins over the app's and ROADIE_DATABASE_URL.",
    )(fn)
    return click.option(
        "--app", "app_spec", envvar="ROADIE_APP", default=None, metavar="MODULE:ATTR",
        help="The App to load, e.g. myapp.tasks:app (or ROADIE_APP).",
    )(fn)  # fmt: skip


def load_app(app_spec: str | None, database_url: str | None, required: bool = False) -> App:
    """The user's App (tasks registered), or a bare one when no --app is needed."""
    if app_spec is None:
        if required:
            raise InvalidInput("this command needs --app MODULE:ATTR (or ROADIE_APP)")
        app = App(database_url)
    else:
        app = import_app(app_spec)
        if database_url is not None:
            app.use_database(database_url)
    return app


def import_app(spec: str) -> App:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InvalidInput(f"bad --app {spec!r}: use MODULE:ATTR, e.g. myapp.tasks:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(f"cannot import {module_name!r} for --app: {exc}") from None
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise InvalidInput(f"--app {spec!r} is not a roadie App")
    return app


def console() -> Console:
    """A console that prints text as it is: no markup or emoji codes (errors hold brackets)."""
    return Console(
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=False,
        width=None if sys.stdout.isatty() else 160,
    )


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z" if value else "-"


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON in {what}: {exc}") from None
    except RecursionError:
        raise InvalidInput(f"malformed JSON in {what}: nested too deeply") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object, e.g. '{{\"video_id\": 7}}'")
    return value
