"""CORS on the sign-in server's JSON API: listed origins only, with credentials, CSRF kept."""

from __future__ import annotations

import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from doorman.config import load_settings
from doorman.exceptions import ConfigError

from .helpers import client, vary
from .test_server import PASSWORD, Server, csrf_token, running, sign_in

pytestmark = pytest.mark.anyio

DOCS = Path(__file__).parent.parent / "docs" / "cors.md"
APP = "https://app.example.com"
EVIL = "https://evil.example.net"
PREFLIGHT = {
    "access-control-request-method": "POST",
    "access-control-request-headers": "content-type, x-csrftoken",
}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    options = {
        "cookie_domain": "example.com",
        "public_url": "https://auth.example.com",
        "cors_origins": ["https://App.Example.com:443/", "http://localhost:5173"],
    }
    async with running(tmp_path, **options) as found:
        await found.doorman.create_user("alice", PASSWORD)
        yield found


def browse(server: Server) -> httpx.AsyncClient:
    return client(server.app, base_url="https://auth.example.com")


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


async def test_a_preflight_from_a_listed_origin_is_answered(server: Server) -> None:
    async with browse(server) as browser:
        response = await browser.options("/-/logout", headers={"origin": APP, **PREFLIGHT})
    assert response.status_code == 204
    assert cors_headers(response) == {
        "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, POST",
        "access-control-allow-headers": "content-type, x-csrftoken, authorization",
        "access-control-max-age": "600",
    }
    assert "origin" in vary(response)


@pytest.mark.parametrize(
    ("origin", "asked", "status"),
    [
        (EVIL, PREFLIGHT, 403),
        ("null", PREFLIGHT, 403),
        ("https://app.example.com.evil.example.net", PREFLIGHT, 403),
        ("http://app.example.com", PREFLIGHT, 403),  # another scheme is another origin
        (APP, {"access-control-request-method": "DELETE"}, 400),
        (APP, {**PREFLIGHT, "access-control-request-headers": "x-evil"}, 400),
    ],
)
async def test_a_preflight_that_is_not_allowed_gets_no_allow_headers(
    server: Server, origin: str, asked: dict[str, str], status: int
) -> None:
    async with browse(server) as browser:
        response = await browser.options("/-/whoami", headers={"origin": origin, **asked})
    assert response.status_code == status
    assert cors_headers(response) == {}


async def test_a_listed_origin_reads_whoami_with_credentials(server: Server) -> None:
    async with browse(server) as browser:
        await sign_in(browser)
        response = await browser.get("/-/whoami", headers={"origin": "http://localhost:5173"})
    assert response.json()["actor"]["id"] == "alice"
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "origin" in vary(response) and "cookie" in vary(response)


async def test_other_origins_and_other_paths_get_no_cors_headers(server: Server) -> None:
    async with browse(server) as browser:
        await sign_in(browser)
        other = await browser.get("/-/whoami", headers={"origin": EVIL})
        outside = await browser.get("/", headers={"origin": APP})
    assert other.status_code == 200  # CORS does not refuse: the browser just may not read it
    assert cors_headers(other) == {}
    assert "origin" in vary(other)
    assert cors_headers(outside) == {}


async def test_a_same_site_origin_posts_with_its_csrf_token(server: Server) -> None:
    """app.example.com calling auth.example.com: the Lax cookie goes, the token is needed."""
    from_app = {"origin": APP, "sec-fetch-site": "same-site"}
    async with browse(server) as browser:
        await sign_in(browser)
        token = (await browser.get("/-/whoami?csrf=1", headers=from_app)).json()["csrftoken"]
        without = await browser.post("/-/logout", json={}, headers=from_app)
        assert without.status_code == 403
        assert without.headers["access-control-allow-origin"] == APP  # the page reads why
        out = await browser.post("/-/logout", json={}, headers={**from_app, "x-csrftoken": token})
        assert out.json() == {"actor": None}
        assert out.headers["access-control-allow-origin"] == APP


@pytest.mark.parametrize("origin", [APP, EVIL])
async def test_a_cross_site_call_on_the_cookie_is_refused_even_from_a_listed_origin(
    server: Server, origin: str
) -> None:
    # A browser never sends the SameSite=Lax cookie with a cross-site fetch, so a
    # request that has it and says cross-site did not come from a page we listed.
    async with browse(server) as browser:
        await sign_in(browser)
        token = await csrf_token(browser)
        headers = {"origin": origin, "sec-fetch-site": "cross-site", "x-csrftoken": token}
        response = await browser.post("/-/logout", json={}, headers=headers)
        assert response.status_code == 403
        assert (await browser.get("/-/whoami")).json()["actor"]["id"] == "alice"


async def test_a_cross_site_page_calls_with_an_api_token(server: Server) -> None:
    alice = await server.doorman.users.by_username("alice")
    assert alice is not None
    _, api_token = await server.doorman.tokens.create(alice)
    other, _ = await server.doorman.tokens.create(alice)
    headers = {
        "origin": "http://localhost:5173",
        "sec-fetch-site": "cross-site",
        "authorization": f"Bearer {api_token}",
    }
    async with browse(server) as api:
        response = await api.post(f"/-/account/tokens/{other.id}/revoke", json={}, headers=headers)
    assert response.json() == {"revoked": True}
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"


@pytest.mark.parametrize("origins", [["*"], [APP, "*"]])
async def test_a_wildcard_with_credentials_stops_start_up(
    tmp_path: Path, origins: list[str]
) -> None:
    with pytest.raises(ConfigError, match=r"cors_origins = .*'\*' would let every site"):
        async with running(tmp_path, cors_origins=origins):
            pass


async def test_without_origins_nothing_changes(tmp_path: Path) -> None:
    async with running(tmp_path) as server, client(server.app) as browser:
        preflight = await browser.options("/-/whoami", headers={"origin": APP, **PREFLIGHT})
        response = await browser.get("/-/whoami", headers={"origin": APP})
    assert cors_headers(preflight) == {} and cors_headers(response) == {}
    assert "origin" not in vary(response)


async def test_the_docs_example(tmp_path: Path) -> None:
    """docs/cors.md: its doorman.toml lets its app in, and the calls it shows work."""
    text = DOCS.read_text()
    [toml] = re.findall(r"```toml\n(.*?)```", text, re.S)
    options = tomllib.loads(toml)
    assert options["cors_origins"] == [APP]
    settings = load_settings(environ={}, overrides={**options, "db": str(tmp_path / "d.db")})
    assert settings.cors_origins == (APP,)
    assert "X-CSRFToken" in text and 'credentials: "include"' in text
    async with running(tmp_path, **options) as server:
        await server.doorman.create_user("alice", PASSWORD)
        from_app = {"origin": APP, "sec-fetch-site": "same-site"}
        async with browse(server) as browser:
            preflight = await browser.options("/-/logout", headers={"origin": APP, **PREFLIGHT})
            assert preflight.status_code == 204
            await sign_in(browser)
            whoami = await browser.get("/-/whoami?csrf=1", headers=from_app)
            token = whoami.json()["csrftoken"]
            out = await browser.post(
                "/-/logout", json={}, headers={**from_app, "x-csrftoken": token}
            )
            assert out.json() == {"actor": None}
