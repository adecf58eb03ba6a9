"""Errors doorman answers: JSON ``{"detail": ...}`` for API clients, a small page for browsers.

Through a real Starlette app with ``doorman.integrations.starlette.exception_handlers``
(tests/test_fastapi.py does the same through FastAPI).
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from doorman._answers import wants_json
from doorman.exceptions import (
    AccountError,
    AuthenticationFailed,
    PermissionDenied,
    StoreError,
    Throttled,
    UsernameTaken,
)
from doorman.integrations.starlette import exception_handlers

from .helpers import client

pytestmark = pytest.mark.anyio

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
ERRORS: dict[str, Exception] = {
    "store": StoreError("postgresql://doorman:hunter2@db/doorman did not answer"),
    "wrong": AuthenticationFailed("Wrong username or password."),
    "throttled": Throttled("Too many failed sign-in attempts.", retry_after=60),
    "account": AccountError("a username is 1 to 150 letters"),
    "taken": UsernameTaken("that username is taken"),
    "denied": PermissionDenied("You may not export <reports>."),
}
#: (name, status, what the client is told)
ANSWERS = [
    ("store", 503, "Service unavailable: try again shortly."),
    ("wrong", 401, "Wrong username or password."),
    ("throttled", 429, "Too many failed sign-in attempts."),
    ("account", 400, "a username is 1 to 150 letters"),
    ("taken", 409, "that username is taken"),
    ("denied", 403, "You may not export <reports>."),
]


def app() -> Any:
    async def fail(request: Request) -> Response:
        raise ERRORS[request.path_params["name"]]

    routes = [Route("/{name}", fail, methods=["GET", "POST"])]
    return Starlette(routes=routes, exception_handlers=exception_handlers)


@pytest.mark.parametrize(("name", "status", "message"), ANSWERS)
async def test_api_clients_get_json_with_the_status(name: str, status: int, message: str) -> None:
    async with client(app()) as api:
        answer = await api.get(f"/{name}", headers={"accept": "application/json"})
        posted = await api.post(f"/{name}", json={}, headers={"accept": BROWSER})
    for found in (answer, posted):
        assert found.status_code == status
        assert found.headers["content-type"] == "application/json"
        assert found.json() == {"detail": message}
        assert found.headers["cache-control"] == "no-store"
    assert "hunter2" not in answer.text


@pytest.mark.parametrize(("name", "status", "message"), ANSWERS)
async def test_browsers_get_a_page(name: str, status: int, message: str) -> None:
    async with client(app()) as browser:
        answer = await browser.get(f"/{name}", headers={"accept": BROWSER})
    assert answer.status_code == status
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.text.startswith("<!DOCTYPE html>")
    assert message.replace("<", "&lt;").replace(">", "&gt;") in answer.text  # escaped
    assert "<reports>" not in answer.text


async def test_retry_after_rides_along() -> None:
    async with client(app()) as api:
        throttled = await api.get("/throttled")
        down = await api.get("/store", headers={"accept": BROWSER})
    assert throttled.headers["retry-after"] == "60"
    assert down.headers["retry-after"] == "5"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, True),
        ({"accept": "*/*"}, True),
        ({"accept": "application/json"}, True),
        ({"accept": "application/json, text/html;q=0.5"}, True),
        ({"accept": "text/html"}, False),
        ({"accept": BROWSER}, False),
        ({"accept": "text/html;q=0"}, True),
        ({"accept": "text/html;q=nan"}, True),
        ({"accept": "text/html", "content-type": "application/json"}, True),
        ({"accept": "text/html", "content-type": "application/x-www-form-urlencoded"}, False),
    ],
)
def test_who_is_an_api_client(headers: dict[str, str], expected: bool) -> None:
    assert wants_json(headers) is expected
