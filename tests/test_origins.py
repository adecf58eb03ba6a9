"""Allowed origins: one notion for ``rd``, the signed ``next`` and websockets.

An origin is a scheme, a host and a port, compared whole. The sign-in server
signs a way back (``/-/auth?rd=``, forwarded headers) only to an allowed
origin, and its login page follows only such a ``next``: an allowed host on
another port or scheme is not enough. Checked on a real ``doorman serve``,
where the finding was made, and no redirect it sends is built from a ``Host``
header a client chose.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from doorman.config import load_settings
from doorman.exceptions import ConfigError
from doorman.origins import AllowedOrigins, Origin, own_origin, parse_origin
from doorman.server.redirects import NextSigner

from .servers import (
    CSRF_COOKIE,
    CSRF_FIELD,
    PASSWORD,
    REQUEST_S,
    SECRET,
    Server,
    add_users,
    cookie_of,
    running,
    sign_in,
    start_server,
    with_cookie,
)

ALLOWED = ["https://app.example.com", "http://tools.example.com:8080", "https://*.apps.example.com"]
HTML = {"accept": "text/html"}


# -- the notion --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example.com", True),
        ("HTTPS://App.Example.COM", True),
        ("https://app.example.com:443", True),
        ("http://app.example.com", False),  # another scheme
        ("https://app.example.com:8443", False),  # another port
        ("https://app.example.com.evil.example", False),  # a look-alike
        ("https://evilapp.example.com", False),
        ("https://example.com", False),  # cookie_domain's own host: not listed
        ("http://tools.example.com:8080", True),
        ("http://tools.example.com", False),
        ("https://tools.example.com:8080", False),
        ("https://a.apps.example.com", True),  # the pattern: any host under apps.example.com
        ("https://x.y.apps.example.com", True),
        ("https://apps.example.com", False),  # not the domain itself
        ("http://a.apps.example.com", False),
        ("https://a.apps.example.com:444", False),
        ("https://a.apps.example.com.evil.example", False),
        ("https://evilapps.example.com", False),
        ("null", False),
        ("", False),
        ("https://app.example.com/", False),  # an Origin header never has a path
        ("https://user@app.example.com", False),
        ("https://app.example.com.", False),
        ("https://app.example.com:0", False),
        ("https://app.example.com:99999", False),
        ("https://app.exampl\u0435.com", False),  # Cyrillic e
        ("https://app.example.com\r\nx: y", False),
        ("ws://app.example.com", False),
    ],
)
def test_an_origin_is_allowed_only_whole(origin: str, allowed: bool) -> None:
    assert AllowedOrigins(ALLOWED).allows(origin) is allowed


def test_the_own_origin_is_the_scheme_and_host_the_request_names() -> None:
    scope = {"type": "websocket", "scheme": "wss", "headers": [(b"host", b"live.example.com")]}
    own = own_origin(scope)
    assert own == Origin("https", "live.example.com", 443)
    assert str(own) == "https://live.example.com"
    nobody = AllowedOrigins()
    assert nobody.allows("https://live.example.com", own=own)
    assert not nobody.allows("http://live.example.com", own=own)
    assert not nobody.allows("https://live.example.com:8443", own=own)
    local = {"type": "websocket", "scheme": "ws", "headers": [(b"host", b"[::1]:8000")]}
    assert own_origin(local) == parse_origin("http://[::1]:8000")
    assert own_origin({"scheme": "ws", "headers": []}) is None
    assert own_origin({"scheme": "ws", "headers": [(b"host", b"a b")]}) is None


def test_the_settings_make_one_notion() -> None:
    settings = load_settings(
        environ={},
        overrides={
            "public_url": "https://auth.example.com/",
            "cors_origins": ["https://dash.example.com"],
            "allowed_origins": ["https://app.example.com:8443"],
            "cookie_domain": "example.com",
        },
    )
    origins = AllowedOrigins.from_settings(settings)
    for allowed in ("https://auth.example.com", "https://dash.example.com"):
        assert origins.allows(allowed), allowed
    assert origins.allows("https://app.example.com:8443")
    for refused in (
        "https://app.example.com",
        "https://other.example.com",
        "http://auth.example.com",
    ):
        assert not origins.allows(refused), refused
    assert load_settings(
        environ={"DOORMAN_ALLOWED_ORIGINS": "https://a.example, https://b.example"}
    )
    with pytest.raises(ConfigError, match=r"allowed_origins = .*https://\*\.example\.com"):
        load_settings(environ={"DOORMAN_ALLOWED_ORIGINS": "*.example.com"})


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://app.example.com/reports?x=1", True),
        ("https://app.example.com:443/x", True),
        ("http://app.example.com/x", False),
        ("https://app.example.com:8443/x", False),
        ("https://app.example.com@evil.example/x", False),
        ("https://user:pw@app.example.com/x", False),
        ("https://app.example.com\\@evil.example/", False),
        ("https://app.example.com/\tx", False),
        ("https://a.apps.example.com/x", True),
        ("//app.example.com/x", False),
        ("/reports", False),
        ("http://[::1", False),
        (None, False),
    ],
)
def test_a_url_is_a_destination_only_on_an_allowed_origin(url: object, allowed: bool) -> None:
    assert AllowedOrigins(ALLOWED).allows_url(url) is allowed


# -- a real doorman serve ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("origins")
    db = str(directory / "doorman.db")
    add_users(db, "alice")
    settings = {
        "db": db,
        "public_url": "https://auth.example.com",
        "cookie_domain": "example.com",
        "allowed_origins": ",".join(ALLOWED),
    }
    started = start_server(directory, **settings)
    with running(started):
        yield started


def way_back(answer: httpx.Response) -> dict[str, list[str]]:
    """The ``next`` and ``next_sig`` of a redirect to the login page."""
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["location"])
    assert location.path == "/-/login"
    return parse_qs(location.query)


@pytest.mark.e2e
@pytest.mark.parametrize(
    "destination",
    [
        "http://app.example.com/x",  # the allowed host, over http
        "https://app.example.com:8443/x",  # the allowed host, on another port
        "http://tools.example.com/x",  # the default port where 8080 is allowed
        "https://other.example.com/x",  # under cookie_domain, not listed
        "https://app.example.com.evil.example/x",
        "https://apps.example.com/x",
    ],
)
def test_rd_is_signed_only_for_an_allowed_origin(server: Server, destination: str) -> None:
    answer = httpx.get(f"{server.url}/-/auth", params={"rd": destination}, timeout=REQUEST_S)
    assert way_back(answer) == {}, "the login page, without a way back"
    forwarded = {
        **HTML,
        "x-forwarded-proto": urlsplit(destination).scheme,
        "x-forwarded-host": urlsplit(destination).netloc,
        "x-forwarded-uri": "/x",
    }
    answer = httpx.get(f"{server.url}/-/auth", headers=forwarded, timeout=REQUEST_S)
    assert way_back(answer) == {}


@pytest.mark.e2e
@pytest.mark.parametrize(
    "destination",
    [
        "https://app.example.com/x?y=1",
        "http://tools.example.com:8080/x",
        "https://a.apps.example.com/",
    ],
)
def test_rd_to_an_allowed_origin_leads_back_after_sign_in(server: Server, destination: str) -> None:
    answer = httpx.get(f"{server.url}/-/auth", params={"rd": destination}, timeout=REQUEST_S)
    query = way_back(answer)
    assert query["next"] == [destination] and query["next_sig"][0]
    signed_in = post_login(server, next=destination, next_sig=query["next_sig"][0])
    assert signed_in.headers["location"] == destination


def post_login(server: Server, **fields: str) -> httpx.Response:
    page = httpx.get(f"{server.url}/-/login", params=fields, headers=HTML, timeout=REQUEST_S)
    token = CSRF_FIELD.search(page.text)
    assert token is not None, page.text
    form = {"username": "alice", "password": PASSWORD, "csrftoken": token[1]}
    answer = httpx.post(
        f"{server.url}/-/login",
        data={**form, **fields},
        headers=with_cookie(None, cookie_of(page, CSRF_COOKIE), **HTML),
        timeout=REQUEST_S,
    )
    assert answer.status_code == 302, answer.text
    return answer


@pytest.mark.e2e
def test_the_login_page_follows_a_signed_next_only_to_an_allowed_origin(server: Server) -> None:
    signer = NextSigner([SECRET])
    for elsewhere in ("https://app.example.com:8443/x", "http://app.example.com/x"):
        answer = post_login(server, next=elsewhere, next_sig=signer.sign(elsewhere))
        assert answer.headers["location"] == "/-/account", elsewhere


# -- no redirect from a Host header ---------------------------------------------------------


@pytest.mark.e2e
def test_no_redirect_is_built_from_the_host_header(server: Server) -> None:
    """Starlette's trailing-slash redirects used the Host header: /-/login/ went to evil."""
    cookie = sign_in(server.url, "alice")
    forged = {"host": "evil.example", "x-forwarded-host": "evil.example", **HTML}
    for path in ("/-/login/", "/-/account/", "/-/admin/users/", "/-/static", "/-/whoami/"):
        for who in (None, cookie):
            answer = httpx.get(server.url + path, headers=with_cookie(who, **forged), timeout=5)
            assert answer.status_code == 404, (path, answer.status_code)
            assert "location" not in answer.headers
    for path in ("/", "/-/account", "/-/admin/users", "/-/auth", "/-/login?next=/x"):
        for who in (None, cookie):
            answer = httpx.get(server.url + path, headers=with_cookie(who, **forged), timeout=5)
            location = answer.headers.get("location", "")
            assert "evil" not in location, (path, location)
            assert location.startswith(("/", "https://auth.example.com/")) or not location


def test_cookie_domain_without_allowed_origins_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from doorman.server.app import create_app

    overrides = {"db": str(tmp_path / "d.db"), "secret": SECRET, "cookie_domain": "example.com"}
    with caplog.at_level(logging.WARNING, logger="doorman.server"):
        create_app(load_settings(environ={}, overrides=overrides))
    assert any("allowed_origins is not" in record.getMessage() for record in caplog.records)


# -- hostile text: never an exception, never a wrong yes -------------------------------------

PIECES = [
    *"/@[]\\.#?%;:0\t",
    *("\uff03", "\uff41", "https://", "http://", "app.example.com", "a.apps.example.com"),
    *(":443", ":8443", "evil.example", "user"),
]
#: Text made of URL pieces, so that the fuzzer often gets close to an allowed URL.
URLISH = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=80), URLISH))
@example(text="https://user@app.example.com/")
@example(text="https://app.example.com@evil.example/")
@example(text="http://evil.example\uff03@app.example.com/")
def test_hostile_text_is_no_origin_and_no_destination_unless_allowed(text: str) -> None:
    origins = AllowedOrigins(ALLOWED)
    found = parse_origin(text)
    if found is not None:
        assert parse_origin(str(found)) == found
        assert origins.allows(found) == origins.allows(text)
    if origins.allows_url(text):
        parts = urlsplit(text)
        assert parts.scheme in ("http", "https") and parts.username is None
        host = parts.hostname or ""
        assert host == "app.example.com" or host.endswith(".apps.example.com")
        assert origins.allows(f"{parts.scheme}://{host}:{parts.port or ''}".rstrip(":"))
    with contextlib.suppress(ValueError):
        AllowedOrigins([text])
