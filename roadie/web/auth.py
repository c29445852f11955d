"""Who is asking, and may they: HTTP Basic users in two roles, CSRF tokens, cross-site refusal.

- No credentials configured: the dashboard serves whoever reaches it (it binds to 127.0.0.1 by
  default; the CLI refuses another address without credentials), acting as the OS user.
- `--auth user:password` makes an admin, `--viewer-auth user:password` a viewer; every route but
  `/healthz` then needs one of them. Viewers see, admins act; `read_only` makes everyone a viewer.
- Every POST must come from the dashboard's own origin (Origin / Sec-Fetch-Site), from an admin,
  and, for HTML forms, carry the CSRF token; JSON API calls must be `application/json` instead,
  which a cross-site form cannot send without a CORS preflight that is never granted.
- Failed logins are logged and answered slower and slower per client address.
- Without credentials, only requests addressed to a loopback name (Host: localhost, 127.0.0.1,
  [::1]) are served: a page on another site cannot reach the dashboard by DNS rebinding (its
  name made to resolve to 127.0.0.1), which the Origin check alone does not see.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from roadie.admin import Admin
from roadie.errors import InvalidInput

log = logging.getLogger("roadie.web")

ADMIN, VIEWER = "admin", "viewer"
OPEN_PATHS = ("/healthz",)
FAILED_LOGIN_DELAY = 0.25  # seconds, doubled per recent failure from one address
FAILED_LOGIN_MAX_DELAY = 4.0
FAILED_LOGIN_MEMORY = 300.0  # failures older than this are forgotten
FAILED_LOGIN_CLIENTS = 10_000  # addresses remembered at most; past that, the stale ones go
CSRF_FIELD = "csrf_token"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


@dataclass(frozen=True)
class User:
    name: str
    role: str  # ADMIN or VIEWER

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


def parse_credentials(text: str | None, what: str) -> tuple[str, str] | None:
    """`user:password` as a pair, None for None or empty; InvalidInput for anything else."""
    if not text:
        return None
    user, colon, password = text.partition(":")
    if not colon or not user or not password:
        raise InvalidInput(f"bad {what}: use user:password, both non-empty")
    return user, password


@dataclass
class Guard:
    """The dashboard's access rules, shared by the middleware and the routes."""

    admin: tuple[str, str] | None = None
    viewer: tuple[str, str] | None = None
    read_only: bool = False
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _failures: dict[str, list[float]] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        """No credentials configured: everyone who reaches the dashboard is let in."""
        return self.admin is None and self.viewer is None

    def user_for(self, headers: Headers) -> User | None:
        """The user the request's Basic credentials name, or None if they match no one."""
        if self.open:
            return User(Admin.actor(), VIEWER if self.read_only else ADMIN)
        given = _basic_credentials(headers.get("authorization"))
        if given is None:
            return None
        for pair, role in ((self.admin, ADMIN), (self.viewer, VIEWER)):
            if pair is not None and _same(given, pair):
                return User(pair[0], VIEWER if self.read_only else role)
        return None

    def csrf_token(self, user: User) -> str:
        """The token a form of this user's must carry: keyed by a secret of this process."""
        return hmac.new(self.secret, user.name.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, user: User, token: str | None) -> None:
        if not token or not hmac.compare_digest(token, self.csrf_token(user)):
            raise HTTPException(403, "missing or stale form token: reload the page and try again")

    def login_delay(self, client: str) -> float:
        """Record a failed login from `client`; how long to wait before answering it."""
        now = time.monotonic()
        if len(self._failures) >= FAILED_LOGIN_CLIENTS:
            self._failures = {
                address: times
                for address, times in self._failures.items()
                if now - times[-1] < FAILED_LOGIN_MEMORY
            }
        recent = [t for t in self._failures.get(client, []) if now - t < FAILED_LOGIN_MEMORY]
        recent.append(now)
        self._failures[client] = recent[-16:]
        return min(FAILED_LOGIN_DELAY * 2 ** (len(recent) - 1), FAILED_LOGIN_MAX_DELAY)


class AccessMiddleware:
    """Sets `request.state.user`, answers 401 to strangers, refuses cross-site and viewer POSTs,
    and adds the security headers to every response."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:  # type: ignore[type-arg]
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
            await send(message)

        refusal = await self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    async def _refusal(self, scope: Scope) -> Response | None:
        """The response that turns this request away, or None to let it through."""
        path = scope["path"]
        if path in OPEN_PATHS:
            return None
        headers = Headers(scope=scope)
        if self.guard.open and not loopback_host(headers.get("host")):
            return PlainTextResponse(
                "without credentials the dashboard answers only requests for localhost: "
                "open it as http://127.0.0.1:PORT/ or configure --auth",
                status_code=403,
            )
        user = self.guard.user_for(headers)
        if user is None:
            if headers.get("authorization"):
                client = scope.get("client") or ("?", 0)
                delay = self.guard.login_delay(client[0])
                log.warning("failed dashboard login from %s for %r", client[0], path)
                await asyncio.sleep(delay)
            return PlainTextResponse(
                "authentication required",
                status_code=401,
                headers={"www-authenticate": 'Basic realm="roadie", charset="UTF-8"'},
            )
        scope.setdefault("state", {})["user"] = user
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            if cross_site(headers):
                return PlainTextResponse("cross-site request refused", status_code=403)
            if not user.is_admin:
                return PlainTextResponse("viewers cannot act: an admin must", status_code=403)
        return None


def cross_site(headers: Headers) -> bool:
    """A request a page of another site made: told by Sec-Fetch-Site, else by Origin."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    return origin == "null" or urlsplit(origin).netloc != headers.get("host")


def loopback_host(host: str | None) -> bool:
    """Whether a Host header names this machine by a loopback name or address (or is absent, as
    from an HTTP/1.0 client: browsers always send it)."""
    if host is None:
        return True
    try:
        name = urlsplit(f"//{host}").hostname
    except ValueError:
        return False
    if not name:
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def current_user(request: Request) -> User:
    return request.state.user  # type: ignore[no-any-return]


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


def _same(given: tuple[str, str], expected: tuple[str, str]) -> bool:
    """Compare both parts in constant time, always both."""
    user_ok = hmac.compare_digest(given[0].encode(), expected[0].encode())
    password_ok = hmac.compare_digest(given[1].encode(), expected[1].encode())
    return user_ok and password_ok
