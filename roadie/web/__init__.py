"""The dashboard: `create_app(app)` is an ASGI app (Starlette) to serve or mount."""

from roadie.web.app import create_app

__all__ = ["create_app"]
