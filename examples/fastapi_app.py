"""A FastAPI app with doorman accounts: sign in, who am I, and a page for admins only.

    export DOORMAN_SECRET="$(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
    doorman users create alice --db accounts.db    # --admin for /admin-stuff
    uvicorn examples.fastapi_app:app

Sign in with a JSON body: {"username": "alice", "password": "..."} posted to /login.
"""

import os
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel

from doorman import AuthMiddleware, Doorman, SessionMiddleware, login, logout
from doorman.integrations.fastapi import (
    Actor,
    SignedInActor,
    current_actor,
    exception_handlers,
    requires,
)
from doorman.stores import SQLStore

DB = os.environ.get("DOORMAN_DB", "accounts.db")
SECRET = os.environ["DOORMAN_SECRET"]  # 32 random characters or more
doorman = Doorman(DB, secret=SECRET)

# The handlers answer doorman's errors: a wrong password 401, too many 429, store down 503.
app = FastAPI(exception_handlers=exception_handlers)
app.add_middleware(AuthMiddleware, doorman=doorman)  # sets scope["actor"]
app.add_middleware(SessionMiddleware, secret=SECRET, store=SQLStore(DB))  # added last: outermost


class Credentials(BaseModel):  # a JSON body: a form on another site cannot post it
    username: str
    password: str


@app.post("/login")
async def sign_in(credentials: Credentials, request: Request):
    user = await doorman.authenticate(
        credentials.username, credentials.password, client=request.client and request.client.host
    )
    return {"actor": await login(request, user)}


@app.post("/logout")
async def sign_out(request: Request):
    await logout(request)
    return {"actor": None}


@app.get("/whoami")
async def whoami(actor: Annotated[Actor | None, Depends(current_actor)]):  # None: signed out
    return {"actor": actor}


@app.get("/notes")
async def notes(actor: SignedInActor):  # 401 when signed out
    return {"notes": [], "owner": actor["username"]}


@app.get("/admin-stuff")
async def admin_stuff(actor: Annotated[Actor, Depends(requires("admin-stuff"))]):
    return {"secret plans": [], "for": actor["username"]}  # admins only, unless rules say more
