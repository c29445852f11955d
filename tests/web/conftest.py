"""Shared fixtures for the dashboard's tests: a roadie App on the test's database (both backends),
the dashboard built on it, and Starlette test clients with or without credentials.

- `web_app(**create_app_kwargs)` builds the dashboard (`roadie.web.create_app`) on `app`.
- `make_client(web=None, *, user=None, **create_app_kwargs)`: a TestClient on a dashboard; `user`
  is a (name, password) pair sent as HTTP Basic on every request.
- `client`: a TestClient on a dashboard without credentials configured (everyone is an admin).
- `admin_client` / `viewer_client`: on a dashboard with ADMIN and VIEWER configured, sending them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from roadie import App
from roadie.web import create_app

ADMIN = ("alice", "admin-secret")
VIEWER = ("victor", "viewer-secret")
CREDENTIALS = {"auth": "alice:admin-secret", "viewer_auth": "victor:viewer-secret"}
BASE_URL = "http://localhost"  # a loopback name: an open dashboard serves only those


def basic(user: str, password: str) -> str:
    """The Authorization header value for HTTP Basic `user:password`."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(autouse=True)
def _no_dashboard_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials come from the test, never from the environment running it."""
    monkeypatch.delenv("ROADIE_DASHBOARD_AUTH", raising=False)
    monkeypatch.delenv("ROADIE_DASHBOARD_VIEWER_AUTH", raising=False)


@pytest.fixture
def web_app(app: App) -> Callable[..., Starlette]:
    """`web_app(**create_app_kwargs)`: the dashboard on the test's App (`app`)."""

    def make(**kwargs: Any) -> Starlette:
        return create_app(app, **kwargs)

    return make


@pytest.fixture
def make_client(web_app: Callable[..., Starlette]) -> Iterator[Callable[..., TestClient]]:
    """`make_client(web=None, *, user=None, **create_app_kwargs)`: a TestClient on `web` (or on a
    new dashboard built with the kwargs), sending `user` = (name, password) as Basic auth.
    Server errors are raised in the test, not turned into 500s."""
    clients: list[TestClient] = []

    def make(
        web: Starlette | None = None,
        *,
        user: tuple[str, str] | None = None,
        raise_server_exceptions: bool = True,
        **kwargs: Any,
    ) -> TestClient:
        if web is None:
            web = web_app(**kwargs)
        elif kwargs:
            raise TypeError("pass either a built dashboard or create_app kwargs, not both")
        client = TestClient(
            web,
            base_url=BASE_URL,
            headers={"authorization": basic(*user)} if user else None,
            raise_server_exceptions=raise_server_exceptions,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """A dashboard without credentials configured: every request is the OS user, an admin."""
    return make_client()


@pytest.fixture
def secured_web(web_app: Callable[..., Starlette]) -> Starlette:
    """A dashboard with an admin (ADMIN) and a viewer (VIEWER) configured."""
    return web_app(**CREDENTIALS)


@pytest.fixture
def admin_client(make_client: Callable[..., TestClient], secured_web: Starlette) -> TestClient:
    return make_client(secured_web, user=ADMIN)


@pytest.fixture
def viewer_client(make_client: Callable[..., TestClient], secured_web: Starlette) -> TestClient:
    return make_client(secured_web, user=VIEWER)
