"""The dashboard's ASGI app: pages, the JSON API, /metrics and /healthz, behind the access rules.

`create_app(app)` can be served by `roadie dashboard` (uvicorn) or mounted inside an existing
Starlette or FastAPI application. Every route calls the admin layer (`app.admin`), never the
database; routes are sync functions, which Starlette runs on its thread pool.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from roadie.app import App
from roadie.web import api, pages
from roadie.web.auth import AccessMiddleware, Guard, parse_credentials

HERE = Path(__file__).parent
STATIC = HERE / "static"


def create_app(
    app: App,
    *,
    auth: str | None = None,
    viewer_auth: str | None = None,
    read_only: bool = False,
    metrics_window: Any = "5m",
) -> Starlette:
    """The dashboard for `app`'s database. `auth` / `viewer_auth` are "user:password" (default:
    ROADIE_DASHBOARD_AUTH / ROADIE_DASHBOARD_VIEWER_AUTH); with neither, anyone who can reach
    it is an admin (or a viewer, `read_only`)."""
    guard = Guard(
        admin=parse_credentials(auth or os.environ.get("ROADIE_DASHBOARD_AUTH"), "--auth"),
        viewer=parse_credentials(
            viewer_auth or os.environ.get("ROADIE_DASHBOARD_VIEWER_AUTH"), "--viewer-auth"
        ),
        read_only=read_only,
    )
    web = Starlette(
        routes=[
            *pages.routes(),
            *api.routes(),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(AccessMiddleware, guard=guard)],
        exception_handlers=api.EXCEPTION_HANDLERS,
    )
    web.state.roadie = app
    web.state.guard = guard
    web.state.metrics_window = metrics_window
    return web
