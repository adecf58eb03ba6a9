"""Asking a sign-in server who a request is: ``GET /-/whoami`` with the request's cookies.

The gate (``doorman.gate``) and the Datasette plugin's gate mode both ask this
way. Anything but a clear answer (not reachable, not 200, too long, not JSON,
no ``actor``, an actor without an id) raises ``WhoamiFailed``, whose message
says what went wrong and never holds the body: callers fail closed. How the
person signed in (``auth_methods``, ``["pwd", "otp"]``) joins the actor as its
``auth_methods`` key, for the app's permission rules. Needs
httpx, imported only when asked.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

__all__ = ["MAX_ANSWER", "WhoamiFailed", "ask_whoami", "valid_actor"]

#: Longest answer read: a whoami answer is a few hundred bytes.
MAX_ANSWER = 64 * 1024


class WhoamiFailed(Exception):
    """The sign-in server gave no answer to trust; the message says why ("answered HTTP 500")."""


async def ask_whoami(
    client: httpx.AsyncClient, url: str, cookies: str, *, time_limit: float
) -> dict[str, Any] | None:
    """The actor the sign-in server at ``url`` sees for the ``cookies`` header; None: nobody."""
    import httpx

    headers = {b"cookie": cookies.encode("latin-1"), b"accept": b"application/json"}
    try:
        async with client.stream(
            "GET", url, headers=headers, timeout=time_limit, follow_redirects=False
        ) as response:
            if response.status_code != 200:
                raise WhoamiFailed(f"answered HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER:
                    raise WhoamiFailed(f"answered more than {MAX_ANSWER} bytes")
    except httpx.HTTPError as error:
        raise WhoamiFailed(f"could not be asked ({type(error).__name__})") from None
    try:
        answer = json.loads(bytes(body))
    except (ValueError, RecursionError):
        raise WhoamiFailed("answered something that is not JSON") from None
    if not isinstance(answer, dict) or "actor" not in answer:
        raise WhoamiFailed('answered JSON without an "actor"')
    actor: dict[str, Any] | None = answer["actor"]
    if actor is not None and not valid_actor(actor):
        raise WhoamiFailed('answered an "actor" without a valid "id"')
    methods = answer.get("auth_methods")
    if actor is not None and _valid_methods(methods):
        actor = {**actor, "auth_methods": methods}
    return actor


def _valid_methods(methods: object) -> bool:
    """How the person signed in, as ``/-/whoami`` says it: a short list of short strings."""
    return (
        isinstance(methods, list)
        and len(methods) <= 16
        and all(isinstance(m, str) and 0 < len(m) <= 16 for m in methods)
    )


def valid_actor(actor: object) -> bool:
    """An actor dict with an id: a non-empty string, or an integer."""
    if not isinstance(actor, dict):
        return False
    actor_id = actor.get("id")
    return (isinstance(actor_id, str) and actor_id != "") or (
        isinstance(actor_id, int) and not isinstance(actor_id, bool)
    )
