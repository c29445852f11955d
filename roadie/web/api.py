"""The JSON API under /api/, its OpenAPI document, /metrics and /healthz."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

EXCEPTION_HANDLERS: dict[Any, Any] = {}


def routes() -> list[BaseRoute]:
    return []
