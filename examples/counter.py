"""A Starlette app that counts your visits in a doorman session.

    make serve                      # or:
    DOORMAN_SECRET=... uvicorn examples.counter:app

Sessions live in the SQLite file doorman.db (DOORMAN_DB to change it, or
DOORMAN_SESSIONS=cookie / redis://... for another store). Without
DOORMAN_SECRET a secret is made once and kept in .doorman-secret, so your
session survives a restart.
"""

from __future__ import annotations

import html
import os
import secrets
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.routing import Route

from doorman import SessionMiddleware
from doorman.stores import open_store


def load_secret(path: Path = Path(".doorman-secret")) -> list[str]:
    if os.environ.get("DOORMAN_SECRET"):
        return [s.strip() for s in os.environ["DOORMAN_SECRET"].split(",") if s.strip()]
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return [path.read_text().strip()]


PAGE = """<!doctype html>
<html lang="en"><meta charset="utf-8"><title>doorman counter</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:1.1rem/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}
@media (prefers-color-scheme: dark){{body{{background:#111;color:#eee}}}}</style>
<h1>You have been here {visits} time{plural}.</h1>
<p>The count lives in a doorman session ({store}). Reload to count up.</p>
<form method="post" action="/reset"><button>Forget me</button></form>
</html>"""


async def home(request: Request) -> HTMLResponse:
    visits = request.session.get("visits", 0) + 1
    request.session["visits"] = visits
    store = html.escape(type(request.app.state.store).__name__)
    page = PAGE.format(visits=visits, plural="" if visits == 1 else "s", store=store)
    return HTMLResponse(page)


async def reset(request: Request) -> RedirectResponse:
    request.session.flush()  # type: ignore[attr-defined]  # ends the session server-side too
    return RedirectResponse("/", status_code=303)


store = open_store(
    os.environ.get("DOORMAN_SESSIONS", "db"), db=os.environ.get("DOORMAN_DB", "doorman.db")
)
app = Starlette(
    routes=[Route("/", home), Route("/reset", reset, methods=["POST"])],
    middleware=[Middleware(SessionMiddleware, secret=load_secret(), store=store)],
)
app.state.store = store
