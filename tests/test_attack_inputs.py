"""Hostile request bodies on every route that reads a form: no 500, nothing read without end.

Every POST route of the sign-in server reads its fields through one helper
(``views/common.py``): a form, or a JSON object for scripts. These tests send
it what no form sends: JSON nested deeper than Python's recursion limit, and
bodies far larger than any form of ours (with and without a Content-Length),
anonymously and signed in as an admin. And Hypothesis draws requests for every
route: methods, query strings, the headers doorman reads, and form or JSON bodies.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from .helpers import client
from .test_server_admin import GET_ROUTES, POST_ROUTES, Server, signed_in, token_of
from .test_server_admin import server as server  # the admin pages' fixture, re-exported
from .test_server_admin import shared_admin_server as shared_admin_server  # one for the module

pytestmark = pytest.mark.anyio

#: Every route that reads fields, as the admin pages' tests name them.
FORM_ROUTES = [
    "/-/login",
    "/-/logout",
    "/-/setup",
    "/-/account/email",
    "/-/account/password",
    "/-/account/tokens",
    "/-/account/sessions/SIGNIN/revoke",
    "/-/account/tokens/TOKEN/revoke",
    "/-/account/two-factor",
    "/-/login/two-factor",
    *POST_ROUTES,
    "/-/admin/users/bob/details",
]
# Past every supported Python's limit (3.13 parses 5,000 levels), within the 64 KiB a body may be.
DEEP_JSON = b'{"username":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
#: A chunk of a body far larger than any form: 64 KiB, sent up to 256 times (16 MiB).
CHUNK, CHUNKS = b"a" * 65536, 256


@pytest.mark.parametrize("path", FORM_ROUTES)
async def test_json_nested_past_the_recursion_limit_is_refused(server: Server, path: str) -> None:
    async with signed_in(server) as browser:
        headers = {"content-type": "application/json", "x-csrftoken": await token_of(browser)}
        answer = await browser.post(path, content=DEEP_JSON, headers=headers)
        anonymous = await browser.post(
            "/-/login", content=DEEP_JSON, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 403, answer.text  # unreadable fields: the form is refused
    assert anonymous.status_code == 403


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
async def test_a_body_larger_than_any_form_is_not_read_to_its_end(
    server: Server, content_type: str
) -> None:
    """Streamed without a Content-Length, the body stops being read past the limit.

    Fields of 896 KiB each: under the size of one part that Starlette's form parser
    refuses, so only a limit on the whole body stops it.
    """
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < CHUNKS * len(CHUNK):
            for piece in (b"name=", *[CHUNK] * 14, b"&"):
                sent += len(piece)
                yield piece

    async with signed_in(server) as browser:
        headers = {"content-type": content_type, "x-csrftoken": await token_of(browser)}
        answer = await browser.post("/-/account/tokens", content=endless(), headers=headers)
    assert answer.status_code == 413, "max_body_size (64 KiB) refuses it as it streams"
    assert sent < CHUNKS * len(CHUNK) // 4, f"read {sent // 1024} KiB"


async def test_a_declared_length_larger_than_any_form_is_refused_unread(server: Server) -> None:
    async with signed_in(server) as browser:
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "x-csrftoken": await token_of(browser),
        }
        body = b"name=" + CHUNK * 8  # 512 KiB, with its Content-Length
        answer = await browser.post("/-/account/tokens", content=body, headers=headers)
        ordinary = await browser.post(
            "/-/account/tokens", data={"name": "ci", "expires": "30"}, headers=headers
        )
    assert answer.status_code == 413
    assert ordinary.status_code == 201, "a form of ordinary size still goes through"


# -- any request to any route ------------------------------------------------------------

ROUTES = [
    *GET_ROUTES,
    *FORM_ROUTES,
    "/-/auth",
    "/-/whoami",
    "/-/health",
    "/-/register",
    "/",
    "/favicon.ico",
    "/-/static/copy.js",
    "/-/nothing-here",
]
FIELDS = ["username", "password", "password2", "current_password", "next", "next_sig",
          "remember", "email", "admin", "groups", "name", "expires", "confirm", "token", "done",
          "csrf", "rd", "code", "action", "cancel"]  # fmt: skip
#: Text that has broken URL and form parsers before: brackets, encodings, controls, quotes.
nasty = st.sampled_from(
    ["http://[", "//evil.example", "/\\evil", "%", "%ff", "\x00", "\ud800", "1e999", "[]", "{}",
     "<script>x</script>", "https://a@app.example.com/", "a" * 5000, "", "on", "false"]
) | st.text(max_size=60)  # fmt: skip
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=80)
HEADERS = ["accept", "content-type", "x-original-url", "x-forwarded-host", "x-forwarded-uri",
           "x-forwarded-proto", "user-agent", "sec-fetch-site", "origin", "x-csrftoken",
           "authorization", "cookie"]  # fmt: skip
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), nasty, max_size=4).map(lambda d: ("form", d)),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | nasty,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(nasty, inner, max_size=3),
        max_leaves=6,
    ).map(lambda value: ("json", value)),
    st.binary(max_size=200).map(lambda raw: ("raw", raw)),
    st.just(("raw", DEEP_JSON)),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    signed=st.booleans(),
    method=st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"]),
    path=st.sampled_from(ROUTES),
    query=st.dictionaries(st.sampled_from(FIELDS), nasty, max_size=3),
    headers=st.dictionaries(st.sampled_from(HEADERS), header_values, max_size=4),
    body=bodies,
)
# What this suite found before: always tried, whatever Hypothesis draws.
@example(
    signed=False,
    method="GET",
    path="/-/auth",
    query={"rd": "http://["},
    headers={},
    body=("form", {}),
)
@example(
    signed=False,
    method="GET",
    path="/-/auth",
    query={},
    headers={"accept": "text/html", "x-forwarded-host": "[", "x-forwarded-uri": "/"},
    body=("raw", b""),
)
@example(
    signed=False,
    method="POST",
    path="/-/login",
    query={},
    headers={"content-type": "application/json"},
    body=("raw", DEEP_JSON),
)
async def test_no_request_to_any_route_gives_a_500(
    server: Server,
    signed: bool,
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: tuple[str, Any],
) -> None:
    kind, value = body
    if kind == "raw":
        content = value
    elif kind == "json":
        content = json.dumps(value).encode()
    else:  # a lone surrogate goes as the bytes a careless client would send
        content = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in value.items()})
    query = {k: v for k, v in query.items() if "\ud800" not in v}
    raw_headers = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
    context = signed_in(server) if signed else client(server.app)
    async with context as browser:
        answer = await browser.request(
            method, path, params=query, content=content, headers=raw_headers
        )
    assert answer.status_code < 500, (answer.status_code, answer.text)
