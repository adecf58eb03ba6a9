"""doorman.sessions._json: json's own answers, without json's set-up on every call."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doorman import MemoryStore, SessionDataError, SessionMiddleware
from doorman._types import Scope
from doorman.sessions import _json

from .conftest import SECRET
from .helpers import client, json_app

REFERENCE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


def test_the_c_encoder_is_in_use_where_there_is_one() -> None:
    if json.encoder.c_make_encoder is not None:
        assert _json.encode is not REFERENCE.encode


@given(json_values)
def test_encode_writes_what_json_writes(value: Any) -> None:
    assert _json.encode(value) == REFERENCE.encode(value)


@given(json_values)
def test_decode_reads_what_json_reads(value: Any) -> None:
    text = REFERENCE.encode(value)
    assert _json.decode(text) == json.loads(text)
    assert _json.decode(f" {text}\n") == json.loads(f" {text}\n")


@pytest.mark.parametrize("text", ["", "{", '{"d":1}x', '{"d":1} {}', "nul", "[1,]", "\ud800"])
def test_decode_refuses_what_json_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        _json.decode(text)


@pytest.mark.parametrize("value", [math.nan, math.inf, {1j: 1}, {"x": object()}])
def test_encode_refuses_what_json_refuses(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        REFERENCE.encode(value)
    with pytest.raises((TypeError, ValueError)):
        _json.encode(value)


@pytest.mark.anyio
async def test_a_session_that_holds_itself_is_refused_naming_the_key() -> None:
    def handler(scope: Scope, session: Any) -> Any:
        loop: list[Any] = []
        loop.append(loop)
        session["loop"] = loop
        return {}

    app = SessionMiddleware(json_app(handler), secret=SECRET, store=MemoryStore())
    async with client(app) as http:
        with pytest.raises(SessionDataError, match="'loop'"):
            await http.get("/")
