"""Return addresses that do not parse are simply not allowed: never a 500, never a foreign Location.

``next``, ``next_sig`` (the login page), ``rd`` and the forwarded headers
(``/-/auth``) are fuzzed with brackets, a full-width ``#``, control characters, non-ASCII
and very long values. Every answer must be below 500, and every ``Location``,
and every ``next`` the login page carries on, must be a path on this site or
a URL on the allowed origin (``public_url``'s; ``cookie_domain`` adds none).
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doorman._types import Message, Scope

from .test_server import HTML, PASSWORD, Server, browse, csrf_token, running, sign_in

pytestmark = pytest.mark.anyio

PUBLIC = "http://auth.example.com"
LOGIN = PUBLIC + "/-/login"
#: The findings: each gave a 500 with a traceback.
FOUND = ["/-/auth?rd=http://[::1", "/-/auth?rd=http://evil.example\uff03@127.0.0.1/"]
FOUND_LOGIN = "/-/login?next=http://["
HIDDEN_NEXT = re.compile(r'name="next" value="([^"]*)"')

PIECES = [
    "http://", "https://", "//", "/", "\\", "[", "]", "[::1", "[::1]", "::1", "\uff03", "#", "@",
    "?", "&", "=", "%", "%2F", "%5B", "%00", "%ff", ":", ":0", ":99999", ":80", ":x",
    "\x00", "\r\n", "\t", " ", "\x7f", "é", "例", "\u202e", "\uff41", "app.example.com",
    "auth.example.com", "example.com", "evil.example", "127.0.0.1", "javascript:", "next",
]  # fmt: skip
urlish = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)
long_values = st.builds(
    lambda piece, n: piece * n, st.sampled_from(["a", "/", "[", "é"]), st.integers(1000, 9000)
)
values = urlish | st.text(max_size=200) | long_values
header_values = values.map(lambda text: text.encode("utf-8")) | st.binary(max_size=200)

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def allowed(url: str) -> bool:
    """A path on this site, or a URL on the one allowed origin (``public_url``'s): no other.

    ``cookie_domain`` alone allows no other host (docs/security.md, allowed origins).
    """
    if url.startswith("/"):
        return not url.startswith("//") and "\\" not in url
    parts = urlsplit(url)
    return (parts.scheme, parts.hostname, parts.port) == ("http", "auth.example.com", None)


def assert_login_location(location: str) -> None:
    """``/-/auth`` sends browsers to our login page only, with an allowed ``next`` if any."""
    assert location == LOGIN or location.startswith(LOGIN + "?"), location
    query = parse_qs(urlsplit(location).query)
    for next_ in query.get("next", []):
        assert allowed(next_), location
        if not next_.startswith("/"):
            assert "next_sig" in query, "an absolute next is signed"


async def call(
    app: Any,
    path: str,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    host: bytes = b"auth.example.com",
    raw_path: bytes | None = None,
    form: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One raw ASGI GET (a POST with ``form``), so that header bytes arrive exactly as drawn."""
    body = urlencode(form).encode() if form is not None else b""
    if form is not None:
        headers = [*(headers or []), (b"content-type", b"application/x-www-form-urlencoded")]
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET" if form is None else "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape") if raw_path is None else raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", host), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("auth.example.com", 80),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    found = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])}
    return start["status"], found, b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    options = {"cookie_domain": "example.com", "public_url": PUBLIC}
    async with running(tmp_path, **options) as found:
        await found.doorman.create_user("alice", PASSWORD)
        yield found


# -- the findings, on a real server --------------------------------------------------------


@pytest.mark.e2e
def test_the_reported_urls_are_not_allowed_on_a_real_server(tmp_path: Path) -> None:
    from .servers import running as serving
    from .servers import start_server

    server = start_server(tmp_path / "serve", public_url=PUBLIC, cookie_domain="example.com")
    with serving(server), httpx.Client(base_url=server.url, timeout=10) as web:
        for target in FOUND:
            answer = web.get(target)
            assert answer.status_code == 302, (target, answer.status_code, answer.text)
            assert answer.headers["location"] == LOGIN
        page = web.get(FOUND_LOGIN, headers=HTML)
        assert page.status_code == 200 and not HIDDEN_NEXT.search(page.text)
        forwarded = [
            {"x-original-url": "http://[::1"},
            {"x-forwarded-host": "[", "x-forwarded-uri": "/x", "x-forwarded-proto": "https"},
            {"x-forwarded-host": "app.example.com:99999", "x-forwarded-uri": "/x"},
            {"x-forwarded-for": "[::1, not-an-address, 300.1.1.1"},
        ]
        for headers in forwarded:
            answer = web.get("/-/auth", headers={**HTML, **headers})
            assert answer.status_code == 302, (headers, answer.status_code)
            assert_login_location(answer.headers["location"])
    # `serving` failed the test had the server logged a traceback or answered a 5xx.


# -- fuzzed, in process ---------------------------------------------------------------------


@FUZZ
@given(rd=values, raw_query=st.binary(max_size=100), html_accept=st.booleans())
async def test_no_rd_gives_a_500_or_a_foreign_location(
    server: Server, rd: str, raw_query: bytes, html_accept: bool
) -> None:
    accept = [(b"accept", b"text/html")] if html_accept else []
    for query in (urlencode({"rd": rd}).encode(), b"rd=" + raw_query):
        status, headers, _ = await call(server.app, "/-/auth", query, accept)
        assert status in (302, 401), (query, status)
        assert status == 302 or "location" not in headers
        if status == 302:
            assert_login_location(headers["location"])


@FUZZ
@given(
    original=header_values,
    host=header_values,
    uri=header_values,
    proto=header_values,
    which=st.sampled_from(["original", "forwarded", "both"]),
)
async def test_no_forwarded_header_gives_a_500_or_a_foreign_location(
    server: Server, original: bytes, host: bytes, uri: bytes, proto: bytes, which: str
) -> None:
    headers = [(b"accept", b"text/html")]
    if which in ("original", "both"):
        headers.append((b"x-original-url", original))
    if which in ("forwarded", "both"):
        headers += [
            (b"x-forwarded-host", host),
            (b"x-forwarded-uri", uri),
            (b"x-forwarded-proto", proto),
        ]
    status, found, _ = await call(server.app, "/-/auth", b"", headers)
    assert status == 302
    assert_login_location(found["location"])


@FUZZ
@given(
    host=header_values,
    forwarded_host=header_values,
    proto=header_values,
    raw_path=st.binary(max_size=200),
    query=st.binary(max_size=200),
)
async def test_no_forwarded_header_gives_the_gate_a_500_or_a_foreign_location(
    server: Server, host: bytes, forwarded_host: bytes, proto: bytes, raw_path: bytes, query: bytes
) -> None:
    """The gate's return address, from headers a trusted proxy passes on, then the login page."""
    from doorman.gate import ExistingCookiesGate

    from .conftest import SECRET

    async def never(scope: Scope, receive: Any, send: Any) -> None:
        raise AssertionError("an anonymous browser reached the app")

    gate = ExistingCookiesGate(
        never,
        api_url=PUBLIC + "/-/whoami",
        auth_redirect_url=LOGIN,
        original_cookies=["doorman_session"],
        secret=SECRET,
        trusted_proxies=["127.0.0.1"],
    )
    headers = [
        (b"accept", b"text/html"),
        (b"x-forwarded-host", forwarded_host),
        (b"x-forwarded-proto", proto),
    ]
    scope_path = "/" + raw_path.decode("latin-1")
    status, found, _ = await call(gate, scope_path, query, headers, host=host, raw_path=raw_path)
    assert status == 302
    location = found["location"]
    assert location == LOGIN or location.startswith(LOGIN + "?"), location
    # The login page judges what the gate signed: an allowed host, or nothing.
    page_query = urlsplit(location).query.encode("latin-1")
    status, _, body = await call(server.app, "/-/login", page_query, [(b"accept", b"text/html")])
    assert status == 200
    for carried in HIDDEN_NEXT.findall(body.decode()):
        assert allowed(html.unescape(carried)), carried


@FUZZ
@given(next_=values, signature=values, sign=st.booleans())
async def test_no_next_on_the_login_page_gives_a_500_or_carries_a_foreign_url(
    server: Server, next_: str, signature: str, sign: bool
) -> None:
    if sign:  # a real signature, as forward-auth would give: only an allowed host may pass
        from doorman.server.redirects import NextSigner

        from .conftest import SECRET

        signature = NextSigner([SECRET]).sign(next_)
    query = urlencode({"next": next_, "next_sig": signature}).encode()
    status, _, body = await call(server.app, "/-/login", query, [(b"accept", b"text/html")])
    assert status == 200
    for carried in HIDDEN_NEXT.findall(body.decode()):
        assert allowed(html.unescape(carried)), carried


@pytest.fixture
async def cookies(server: Server) -> dict[str, tuple[bytes, str]]:
    """A signed-in browser's Cookie header, and a visitor's with the token for its forms."""
    async with browse(server) as visitor, browse(server) as alice:
        token = await csrf_token(visitor)
        await sign_in(alice)
        return {
            "visitor": (_cookie_header(visitor), token),
            "alice": (_cookie_header(alice), ""),
        }


def _cookie_header(browser: httpx.AsyncClient) -> bytes:
    return "; ".join(f"{name}={value}" for name, value in browser.cookies.items()).encode()


@FUZZ
@given(next_=values, signature=values)
async def test_no_next_gives_a_signed_in_visitor_a_foreign_location(
    server: Server, cookies: dict[str, tuple[bytes, str]], next_: str, signature: str
) -> None:
    query = urlencode({"next": next_, "next_sig": signature}).encode()
    alice, _ = cookies["alice"]
    headers = [(b"accept", b"text/html"), (b"cookie", alice)]
    status, found, _ = await call(server.app, "/-/login", query, headers)
    assert status in (200, 303), status
    if status == 303:
        assert allowed(found["location"]), found["location"]
    visitor, token = cookies["visitor"]
    form = {"username": "alice", "password": PASSWORD, "csrftoken": token}
    form |= {"next": next_, "next_sig": signature}
    status, found, _ = await call(server.app, "/-/login", b"", [(b"cookie", visitor)], form=form)
    assert status in (302, 413), status  # 413: a form over 64 KiB
    if status == 302:
        assert allowed(found["location"]), found["location"]
