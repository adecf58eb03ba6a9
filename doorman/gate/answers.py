"""What the gate reads from a request and how it answers: cookies in, JSON and headers out."""

from __future__ import annotations

import json
import re

from .._scope import COOKIE_NAME
from .._types import Message, Scope, Send

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def cookies_of(scope: Scope) -> list[tuple[str, str]]:
    """Every ``name=value`` of every Cookie header, in order; duplicates kept."""
    pairs: list[tuple[str, str]] = []
    for key, value in scope["headers"]:
        if key != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            name, sep, cookie = part.strip().partition("=")
            if sep and COOKIE_NAME.fullmatch(name) and not _CONTROL.search(cookie):
                pairs.append((name, cookie.strip()))
    return pairs


def adding_headers(send: Send, cookie: bytes | None) -> Send:
    """``Vary: Cookie`` on every gated answer (it depends on who asks), and our cookie."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            varies = b",".join(v for k, v in headers if k.lower() == b"vary").lower()
            if b"cookie" not in varies and b"*" not in varies:
                headers.append((b"vary", b"Cookie"))
            if cookie:
                headers.append((b"set-cookie", cookie))
            message = {**message, "headers": headers}
        await send(message)

    return send_with_headers


async def send_json(
    send: Send, status: int, body: object, headers: list[tuple[bytes, bytes]]
) -> None:
    content = b"" if body is None else json.dumps(body).encode()
    start = [
        (b"content-length", str(len(content)).encode()),
        (b"cache-control", b"no-store"),
        (b"vary", b"Cookie"),
    ]
    if content:
        start.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": start + headers})
    await send({"type": "http.response.body", "body": content})


async def refuse(kind: str, send: Send, status: int, message: str) -> None:
    if kind == "websocket":
        await send({"type": "websocket.close", "code": 1013})  # try again later
        return
    await send_json(send, status, {"error": message}, [])
