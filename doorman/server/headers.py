"""Security headers on every answer of the sign-in server: a page's, or the strictest."""

from __future__ import annotations

from collections.abc import Iterable

from .._types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "API_SECURITY_HEADERS",
    "SECURITY_HEADERS",
    "SecurityHeadersMiddleware",
    "content_security_policy",
]


def content_security_policy(form_targets: Iterable[str] = ()) -> str:
    """Everything from this origin; no inline script at all; no framing; forms post here only.

    ``form_targets`` are origins (``https://app.example.com``) that a form's
    answer may redirect to besides this one: browsers apply ``form-action`` to
    the redirect too, so the login page lists the one destination it was given.
    """
    form_action = " ".join(["'self'", *sorted(set(form_targets))])
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"object-src 'none'; base-uri 'none'; form-action {form_action}; frame-ancestors 'none'"
    )


def _headers(policy: str) -> tuple[tuple[bytes, bytes], ...]:
    return (
        (b"content-security-policy", policy.encode()),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
        (b"x-content-type-options", b"nosniff"),
        (b"cross-origin-opener-policy", b"same-origin"),
    )


#: What every page (an HTML answer) gets, unless it sets its own.
SECURITY_HEADERS = _headers(content_security_policy())
#: What every other answer gets (JSON, text, redirects, files), unless it sets its own:
#: nothing may load from it or frame it, the strictest policy there is (and a short one:
#: forward-auth answers are most of the traffic). The fast paths write these in.
API_SECURITY_HEADERS = _headers("default-src 'none'; frame-ancestors 'none'")
_NAMES = {name for name, _ in SECURITY_HEADERS}


class SecurityHeadersMiddleware:
    """Adds the headers above (a page's, for HTML) unless the answer set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                present = {name.lower() for name, _ in headers} & _NAMES
                wanted = SECURITY_HEADERS if _is_html(headers) else API_SECURITY_HEADERS
                headers.extend(h for h in wanted if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_html(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.lower().startswith(b"text/html")
    return False
