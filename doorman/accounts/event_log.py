"""The security event log: what happened to each account, by whom, from where.

``EventLog.record`` writes one row; ``Doorman.fire`` feeds it every plugin
event (sign-ins, failures, sign-outs, refusals), and the pages and commands
that change accounts record what they did. A row names its kind
(``EventKind``), the account (id and username), the actor who did it, the
client address and a small JSON ``detail``; never a password, a token, a
cookie or a link (``check_detail`` refuses keys that name one, and redacts
values that hold an API token).

The log fails open, and only the log: a write that fails is one ERROR line on
``doorman.security`` and the request goes on; one that takes longer than two
seconds is left to finish on its own. Rows written together go out in one
INSERT (``doorman.accounts._event_writes``), so a burst of failed sign-ins
costs one transaction, not one each. Refusals that anyone can repeat at no
cost (throttled sign-ins, denied permissions, refused websockets) are written
once a minute per worker for the same account, actor and address.
"""

from __future__ import annotations

import builtins
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine

from ..db.schema import events_table, users_table
from ..db.transaction import connect
from ..events import (
    EventKind,
    LoginEvent,
    LoginFailedEvent,
    LogoutEvent,
    PermissionDeniedEvent,
    WebSocketRefusedEvent,
    kind_label,
)
from ._event_writes import BatchWriter, Repeats
from .event_details import check_detail, check_kind
from .users import User, Users

__all__ = ["EventFilter", "EventLog", "EventPage", "LoggedEvent", "edit_detail"]

security_log = logging.getLogger("doorman.security")

#: Kinds anyone can repeat at no cost: one row a minute per worker for the same who and where.
#: A refused passkey is one: the passwordless sign-in asks no name, so anyone may send one.
_NOISY = frozenset(
    {
        EventKind.SIGN_IN_THROTTLED,
        EventKind.PERMISSION_DENIED,
        EventKind.WEBSOCKET_REFUSED,
        EventKind.PASSKEY_FAILED,
    }
)
_PRUNE_CHUNK = 5_000
#: How many of the newest events ``kinds`` looks at for plugins' kinds.
_RECENT_KINDS = 10_000
_e = events_table.c
#: The ``via`` of actors that are doorman's own users (their id is the username).
_OWN_ACTORS = frozenset({"session", "token", "basic"})


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One row of the log."""

    id: int
    at: float
    kind: str
    #: The account it is about; None once the account is deleted, or when none was named.
    user_id: int | None
    username: str | None
    #: Who did it: an actor id (an admin, or the user); None for nobody signed in or the CLI.
    actor: str | None
    address: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return kind_label(self.kind)

    @property
    def done_by(self) -> Literal["cli", "self", "other", "nobody"]:
        """Who did it: the command line, the account's own user, another actor (an
        admin), or nobody signed in (a failed sign-in, say)."""
        if self.detail.get("via") == "cli":
            return "cli"
        if self.actor is None:
            return "nobody"
        return "self" if self.actor == self.username else "other"

    def owner_fields(self) -> dict[str, Any]:
        """The event as JSON for the account's own user: another actor is "other", never
        named (an admin's name is not theirs to see), and no detail."""
        return {
            "at": self.at,
            "kind": self.kind,
            "label": self.label,
            "address": self.address,
            "by": self.done_by,
        }

    def public_fields(self) -> dict[str, Any]:
        """The event as JSON, for the CLI and the API (the internal user id left out)."""
        return {
            "id": self.id,
            "at": self.at,
            "kind": self.kind,
            "username": self.username,
            "actor": self.actor,
            "address": self.address,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events to list; every field narrows, None (or empty) does not."""

    #: Exactly this account's events (by id): what a person sees of their own.
    user_id: int | None = None
    #: Events about this username or done by this actor id: what an admin searches for.
    name: str | None = None
    kinds: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True)
class EventPage:
    """A page of events, newest first, and the cursors of the pages beside it."""

    events: list[LoggedEvent]
    #: ``before=`` this id lists the next, older page; None when there is none.
    older: int | None
    #: ``after=`` this id lists the previous, newer page; None when there is none.
    newer: int | None


class EventLog:
    """Records, lists and prunes security events. See the module's docstring."""

    def __init__(self, engine: AsyncEngine, users: Users) -> None:
        self.engine = engine
        self.users = users
        self._writer = BatchWriter(self._insert)
        self._repeats = Repeats()

    # -- writing -----------------------------------------------------------------

    async def record(
        self,
        kind: str,
        *,
        user: User | None = None,
        actor: Mapping[str, Any] | str | None = None,
        address: str | None = None,
        detail: Mapping[str, Any] | None = None,
        at: float | None = None,
    ) -> None:
        """Write one event: ``kind`` (an ``EventKind``, or a plugin's own word) about
        ``user``, done by ``actor`` (an actor dict or its id) from ``address``.

        ``detail`` is a small mapping of plain values; a key that names a secret
        is a ``ValueError`` (a bug to fix), as is a malformed kind. Never raises
        for the database: a failed write is logged, not fatal.
        """
        row = {
            "at": time.time() if at is None else at,
            "kind": check_kind(kind),
            "user_id": user.id if user is not None else None,
            "username": user.username if user is not None else None,
            "actor": _actor_id(actor),
            "address": address[:64] if address else None,
            "detail": check_detail(detail),
        }
        if kind in _NOISY and not self._repeats.first(row):
            return
        await self._writer.add(row)

    async def record_event(self, event: object, *, user: User | None = None) -> None:
        """Write a plugin event (``doorman.events``) as its row; others are ignored.

        ``user`` is the account it is about, when the caller has it at hand;
        else the actor's own account is looked up (a failed sign-in never is:
        the name typed may be anyone's, or a password typed in the wrong box).
        """
        try:
            found = await self._row_of(event, user)
            if found is not None:
                kind, values = found
                await self.record(kind, **values)
        except Exception as error:  # the lookup: a database that does not answer
            name = type(event).__name__
            security_log.error("security event log: %s not recorded: %s", name, error)

    async def _row_of(self, event: object, user: User | None) -> tuple[str, dict[str, Any]] | None:
        if isinstance(event, LoginFailedEvent):
            kind = (
                EventKind.SIGN_IN_THROTTLED
                if event.reason == "throttled"
                else EventKind.SIGN_IN_FAILED
            )
            detail: dict[str, Any] = {}
            if event.reason != "throttled":
                detail["reason"] = event.reason
            return kind, {"user": user, "address": event.client, "detail": detail, "at": event.at}
        if isinstance(event, LoginEvent | LogoutEvent | PermissionDeniedEvent):
            actor = event.actor
            if actor is None:
                return None  # nobody signed in: a sign-out or a refusal of nobody in particular
            user = user or await self._user_of(actor)
            values = {"user": user, "actor": actor, "address": event.client, "at": event.at}
            if isinstance(event, LoginEvent):
                return EventKind.SIGNED_IN, {**values, "detail": {"via": event.via}}
            if isinstance(event, LogoutEvent):
                return EventKind.SIGNED_OUT, values
            detail = {"action": event.action, "resource": event.resource}
            return EventKind.PERMISSION_DENIED, {**values, "detail": detail}
        if isinstance(event, WebSocketRefusedEvent):
            detail = {"origin": event.origin, "path": event.path}
            return EventKind.WEBSOCKET_REFUSED, {
                "address": event.client,
                "detail": detail,
                "at": event.at,
            }
        return None

    async def _user_of(self, actor: Mapping[str, Any]) -> User | None:
        if actor.get("via") not in _OWN_ACTORS:
            return None  # a plugin's actor: its id names no account of ours
        return await self.users.by_username(str(actor.get("id", "")))

    async def _insert(self, rows: builtins.list[dict[str, Any]]) -> None:
        try:
            try:
                await self._insert_rows(rows)
            except exc.IntegrityError:  # an account deleted meanwhile: keep its rows, unlinked
                await self._insert_rows(await self._unlink_missing(rows))
        except Exception as error:
            kinds = ", ".join(sorted({row["kind"] for row in rows}))
            security_log.error(
                "security event log: %d event(s) not recorded (%s): %s", len(rows), kinds, error
            )

    async def _insert_rows(self, rows: builtins.list[dict[str, Any]]) -> None:
        async with connect(self.engine, write=True) as connection:
            await connection.execute(events_table.insert(), rows)

    async def _unlink_missing(
        self, rows: builtins.list[dict[str, Any]]
    ) -> builtins.list[dict[str, Any]]:
        ids = {row["user_id"] for row in rows if row["user_id"] is not None}
        query = sa.select(users_table.c.id).where(users_table.c.id.in_(ids))
        async with connect(self.engine) as connection:
            there = set((await connection.execute(query)).scalars())
        return [row if row["user_id"] in there else {**row, "user_id": None} for row in rows]

    async def flush(self) -> None:
        """Wait for the rows still being written (``close`` does)."""
        await self._writer.flush()

    # -- reading -----------------------------------------------------------------

    async def page(
        self,
        where: EventFilter = EventFilter(),
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> EventPage:
        """Up to ``limit`` events, newest first: the newest, or those just ``before``
        (older than) or just ``after`` (newer than) an event's id."""
        query = sa.select(events_table).where(*_conditions(where)).limit(limit + 1)
        if after is not None:
            query = query.where(_e.id > after).order_by(_e.id.asc())
        else:
            if before is not None:
                query = query.where(_e.id < before)
            query = query.order_by(_e.id.desc())
        async with connect(self.engine) as connection:
            rows = (await connection.execute(query)).mappings().all()
        more = len(rows) > limit
        events = [_event(row) for row in rows[:limit]]
        if after is not None:
            events.reverse()
            newer = events[0].id if more and events else None
            older = events[-1].id if events else None
        else:
            older = events[-1].id if more else None
            newer = events[0].id if before is not None and events else None
        return EventPage(events, older=older, newer=newer)

    async def list(
        self, where: EventFilter = EventFilter(), *, limit: int = 50
    ) -> builtins.list[LoggedEvent]:
        """The newest ``limit`` events that match ``where``, newest first."""
        return (await self.page(where, limit=limit)).events

    async def kinds(self) -> builtins.list[str]:
        """Every kind doorman records, then those of plugins among the newest events.

        Only the newest ``_RECENT_KINDS`` rows are looked at: a list for a menu
        must not read the whole log.
        """
        recent = sa.select(_e.kind).order_by(_e.id.desc()).limit(_RECENT_KINDS).subquery()
        async with connect(self.engine) as connection:
            found = set((await connection.execute(sa.select(recent.c.kind).distinct())).scalars())
        return [*EventKind, *sorted(found - set(EventKind))]

    async def holds(self, kind: str) -> bool:
        """Whether any event of ``kind`` is in the log (one look in an index)."""
        query = sa.select(_e.id).where(_e.kind == kind).limit(1)
        async with connect(self.engine) as connection:
            return (await connection.execute(query)).first() is not None

    async def prune(self, older_than: float) -> int:
        """Delete events older than ``older_than`` seconds; return how many went.

        In chunks, so that a large log never holds the database's write lock long.
        """
        cutoff = time.time() - older_than
        removed = 0
        while True:
            chunk = sa.select(_e.id).where(_e.at < cutoff).limit(_PRUNE_CHUNK)
            async with connect(self.engine, write=True) as connection:
                result = await connection.execute(
                    events_table.delete().where(_e.id.in_(chunk.scalar_subquery()))
                )
            removed += max(result.rowcount, 0)
            if result.rowcount < _PRUNE_CHUNK:
                return removed


def edit_detail(before: User, after: User) -> dict[str, Any] | None:
    """The detail of a ``user-edited`` event: which of email, admin flag and groups
    changed (and the new admin flag); None when nothing did. Never the values else."""
    changed = [
        name
        for name, old, new in (
            ("email", before.email, after.email),
            ("admin", before.is_admin, after.is_admin),
            ("groups", sorted(before.groups), sorted(after.groups)),
        )
        if old != new
    ]
    if not changed:
        return None
    return {"changed": changed, **({"admin": after.is_admin} if "admin" in changed else {})}


def _conditions(where: EventFilter) -> builtins.list[sa.ColumnElement[bool]]:
    found: builtins.list[sa.ColumnElement[bool]] = []
    if where.user_id is not None:
        found.append(_e.user_id == where.user_id)
    if where.name is not None:
        found.append(sa.or_(_e.username == where.name, _e.actor == where.name))
    if where.kinds:
        found.append(_e.kind.in_(where.kinds))
    if where.since is not None:
        found.append(_e.at >= where.since)
    if where.until is not None:
        found.append(_e.at < where.until)
    return found


def _event(row: sa.RowMapping) -> LoggedEvent:
    try:
        detail = json.loads(row["detail"]) if row["detail"] else {}
    except ValueError:
        detail = {}
    return LoggedEvent(
        id=row["id"],
        at=row["at"],
        kind=row["kind"],
        user_id=row["user_id"],
        username=row["username"],
        actor=row["actor"],
        address=row["address"],
        detail=detail if isinstance(detail, dict) else {},
    )


def _actor_id(actor: Mapping[str, Any] | str | None) -> str | None:
    if actor is None:
        return None
    found = actor if isinstance(actor, str) else actor.get("id")
    return None if found is None else str(found)[:150]
