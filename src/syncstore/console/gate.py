"""Who may use the local console: the per-run access token, the CSRF check on
every state-changing request, and the headers every answer carries.

``syncstore ui`` prints one URL with a random token in it, as Jupyter does. The
first request brings it as ``?token=...``; the gate answers with a cookie that
holds it (HTTP-only, ``SameSite=Strict``, named after the port, since cookies
do not tell ports apart) and redirects to the same page without it, so the
token leaves the address bar and the history. Every later request must carry
that cookie. Anything else gets 403 and reaches no page.

A state-changing request is a POST of an urlencoded form (at most
:data:`MAX_FORM` bytes) that carries the CSRF token, as the ``csrf_token``
field or the ``X-CSRF-Token`` header (htmx sends the header). A POST whose
``Origin`` is another site is refused whatever it carries. Other methods get
405. The parsed form is handed to the page in the request scope (see
:func:`syncstore.console.forms.form`), so handlers never read the body again.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl, urlencode

from syncstore.console.forms import FORM_SCOPE_KEY, parse_form

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_FORM = 1_000_000  # bytes of one form: a task description fits; nothing else needs more
CSRF_FIELD = "csrf_token"
CSRF_HEADER = b"x-csrf-token"
# Pages, styles and scripts come only from the console itself; no inline script,
# no inline style, no frames, no form posting elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def csrf_token_for(access_token: str) -> str:
    """The CSRF token of a run: derived from its access token, so it needs no storage."""
    return hmac.new(access_token.encode(), b"syncstore-console-csrf", hashlib.sha256).hexdigest()


def cookie_name(port: int) -> str:
    return f"syncstore-ui-{port}"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _cookies(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, _, text = part.strip().partition("=")
                if name:
                    found.setdefault(name, text)
    return found


async def _answer(send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
                *(headers or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every answer, and ``Server-Timing: app;dur=MS``
    (the time from the request to the start of the answer: what the benchmark reads)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                elapsed = (time.perf_counter() - started) * 1000
                present = {key.lower() for key, _ in message.get("headers", ())}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                extra.append((b"server-timing", f"app;dur={elapsed:.3f}".encode()))
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class TokenGate:
    """Lets a request through only with the run's token (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, token: str):
        if len(token) < 16:
            raise ValueError("the console's access token must be at least 16 characters")
        self.app = app
        self.token = token
        self.csrf = csrf_token_for(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websockets here
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        name = cookie_name(scope.get("server", ("", 0))[1] or 0)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [value for key, value in query if key == "token"]
        if given:
            if not hmac.compare_digest(given[-1].encode(), self.token.encode()):
                await _answer(send, 403, "wrong token: open the URL that `syncstore ui` printed\n")
                return
            # Swap the token for a cookie and send the browser to the same page without it.
            rest = urlencode([(key, value) for key, value in query if key != "token"])
            location = scope["path"] + (f"?{rest}" if rest else "")  # the whole path, mount prefix included
            cookie = f"{name}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            await _answer(
                send, 303, "signed in\n", [(b"location", location.encode()), (b"set-cookie", cookie.encode())]
            )
            return
        cookie = _cookies(scope).get(name)
        if cookie is None or not hmac.compare_digest(cookie.encode(), self.token.encode()):
            await _answer(send, 403, "this console needs its token: open the URL that `syncstore ui` printed\n")
            return
        method = scope["method"]
        if method in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        if method != "POST":
            await _answer(send, 405, "only GET and POST are served here\n", [(b"allow", b"GET, HEAD, POST")])
            return
        await self._post(scope, receive, send)

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = _header(scope, b"origin")
        host = _header(scope, b"host")
        if origin is not None and origin != "null" and origin != f"http://{host}":
            await _answer(send, 403, "refused: a request from another site\n")
            return
        if _header(scope, b"sec-fetch-site") == "cross-site":
            await _answer(send, 403, "refused: a request from another site\n")
            return
        content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_FORM:
                await _answer(send, 413, f"a form may hold at most {MAX_FORM} bytes\n")
                return
        if body and content_type != "application/x-www-form-urlencoded":
            await _answer(send, 415, "send an urlencoded form\n")
            return
        try:
            fields = parse_form(body)
        except ValueError as exc:
            await _answer(send, 400, f"unreadable form: {exc}\n")
            return
        sent = _header(scope, b"x-csrf-token") or fields.get(CSRF_FIELD) or ""
        if not hmac.compare_digest(sent.encode(), self.csrf.encode()):
            await _answer(send, 403, "refused: the form's CSRF token is missing or wrong; reload the page\n")
            return
        scope[FORM_SCOPE_KEY] = fields
        replayed = False

        async def replay() -> dict[str, Any]:
            # The body once, as read; after it, what the client does (a disconnect).
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
