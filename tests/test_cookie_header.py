"""How SessionMiddleware finds its cookie in the Cookie headers (``_read_cookies``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doorman.sessions.middleware import _read_cookies

NEEDLE = b"doorman_session="


def reference(headers: list[tuple[bytes, bytes]], needle: bytes = NEEDLE) -> list[str] | None:
    """The rule, written plainly: each ``;``-separated part whose name is ours."""
    found = []
    for header, value in headers:
        if header != b"cookie":
            continue
        for part in value.split(b";"):
            part = part.lstrip(b" \t")
            if part.startswith(needle):
                cookie = part[len(needle) :].strip()
                if 0 < len(cookie) <= 4096:
                    found.append(cookie.decode("latin-1"))
    return found[:3] or None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"doorman_session=abc", ["abc"]),
        (b"a=1; doorman_session=abc; b=2", ["abc"]),
        (b"a=1;\tdoorman_session= abc ;b=2", ["abc"]),
        (b"xdoorman_session=abc", None),  # another name that ends like ours
        (b"a=x doorman_session=abc", None),  # inside another cookie's value
        (b"doorman_session=", None),
        (
            b"doorman_session=a; doorman_session=b; doorman_session=c; doorman_session=d",
            list("abc"),
        ),
        (b"doorman_session=doorman_session=x", ["doorman_session=x"]),
        (b"doorman_session=" + b"x" * 4097, None),
    ],
)
def test_cookies_found_in_a_header(header: bytes, expected: list[str] | None) -> None:
    headers = [(b"host", b"example.com"), (b"cookie", header)]
    assert _read_cookies(headers, NEEDLE) == expected == reference(headers)


def test_every_cookie_header_counts_in_order() -> None:
    headers = [(b"cookie", b"doorman_session=a"), (b"x-cookie", b"doorman_session=no")]
    headers += [(b"cookie", b"b=1; doorman_session=b")]
    assert _read_cookies(headers, NEEDLE) == ["a", "b"]


pieces = st.sampled_from(
    [b"doorman_session=", b"doorman_", b"session=", b";", b" ", b"\t", b"=", b"x", b"a=1", b"\xff"]
)


@given(st.lists(st.lists(pieces, max_size=12).map(b"".join), max_size=3))
def test_the_header_is_read_as_the_plain_rule_reads_it(values: list[bytes]) -> None:
    headers = [(b"cookie", value) for value in values]
    assert _read_cookies(headers, NEEDLE) == reference(headers)
