"""What a person did through the pages, written to the security event log.

The actor is whoever is signed in on the request (an admin acting on someone
else, or the person themselves), the address the request's client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from ..._scope import client_address
from ...accounts.users import User
from ..state import state_of

__all__ = ["record"]


async def record(
    request: Request,
    kind: str,
    user: User | None,
    detail: Mapping[str, Any] | None = None,
    *,
    actor: str | None = None,
) -> None:
    """Write ``kind`` about ``user``, done by this request's actor (or ``actor``, an id)
    from its address."""
    await state_of(request).doorman.events.record(
        kind,
        user=user,
        actor=actor or request.scope.get("actor"),
        address=client_address(request.scope),
        detail=detail,
    )
