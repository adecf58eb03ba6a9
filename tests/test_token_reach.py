"""A token made with a token: never more scopes, never a later end; on SQLite and PostgreSQL.

``Tokens.create(within=...)`` is what the account page calls when a request
comes with a token (issue 12, item 1); the HTTP side, on a real server, is in
test_server_tokens.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from doorman.accounts.tokens import MAX_LIVE_TOKENS, MAX_NEW_TOKENS_AN_HOUR, Token
from doorman.accounts.users import User
from doorman.auth.actors import set_actor
from doorman.core import Doorman
from doorman.exceptions import AccountError, PermissionDenied

from .test_accounts import MakeDoorman
from .test_accounts import alice as alice  # fixtures, used by name
from .test_accounts import bob as bob
from .test_accounts import db_url as db_url
from .test_accounts import doorman as doorman
from .test_accounts import make_doorman as make_doorman
from .test_accounts import migrated_postgres_url as migrated_postgres_url
from .test_accounts import migrated_sqlite as migrated_sqlite
from .test_accounts import shared_doorman as shared_doorman

pytestmark = pytest.mark.anyio

DAY = 86400


async def test_a_scoped_token_makes_tokens_with_its_scopes_at_most(
    doorman: Doorman, alice: User
) -> None:
    parent, _ = await doorman.tokens.create(alice, scopes=["account", "view"])
    inherited, _ = await doorman.tokens.create(alice, within=parent)
    assert inherited.scopes == ("account", "view")
    narrower, _ = await doorman.tokens.create(alice, scopes=["view"], within=parent)
    assert narrower.scopes == ("view",)
    with pytest.raises(PermissionDenied, match="has: account, view"):
        await doorman.tokens.create(alice, scopes=["view", "admin"], within=parent)
    assert len(await doorman.tokens.list(alice)) == 3, "nothing written for a refusal"


async def test_a_token_makes_no_token_that_ends_later(doorman: Doorman, alice: User) -> None:
    parent, _ = await doorman.tokens.create(alice, expires_in=10 * DAY)
    never, _ = await doorman.tokens.create(alice, within=parent)
    longer, _ = await doorman.tokens.create(alice, expires_in=30 * DAY, within=parent)
    shorter, _ = await doorman.tokens.create(alice, expires_in=DAY, within=parent)
    assert never.expires_at == longer.expires_at == parent.expires_at
    assert shorter.expires_at is not None and shorter.expires_at < time.time() + DAY + 60
    unlimited, _ = await doorman.tokens.create(alice)
    child, _ = await doorman.tokens.create(alice, within=unlimited)
    assert (child.scopes, child.expires_at) == (None, None), "an unlimited token can rotate"


async def test_a_revoked_token_or_another_users_makes_nothing(
    doorman: Doorman, alice: User, bob: User
) -> None:
    parent, _ = await doorman.tokens.create(alice)
    with pytest.raises(PermissionDenied, match="its own user"):
        await doorman.tokens.create(bob, within=parent)
    await doorman.tokens.revoke(parent.id)
    with pytest.raises(PermissionDenied, match="no longer valid"):
        await doorman.tokens.create(alice, within=parent)  # the record was read before
    assert await doorman.tokens.list(alice) == [] and await doorman.tokens.list(bob) == []


def test_covers_means_no_more_scopes_and_no_later_end() -> None:
    def token(scopes: tuple[str, ...] | None, expires_at: float | None) -> Token:
        return Token("0" * 16, 1, "", scopes, 0.0, expires_at, None, None)

    wide = token(None, None)
    narrow = token(("view",), 100.0)
    assert wide.covers(narrow) and wide.covers(wide) and narrow.covers(narrow)
    assert not narrow.covers(wide)
    assert not narrow.covers(token(("view",), None)), "never ends: later"
    assert not narrow.covers(token(("view",), 101.0))
    assert not narrow.covers(token(("view", "edit"), 50.0))
    assert not narrow.covers(token(None, 50.0))
    assert narrow.covers(token((), 50.0))


async def test_get_reads_a_token_by_id_live_or_not(doorman: Doorman, alice: User) -> None:
    made, _ = await doorman.tokens.create(alice, name="ci")
    assert (await doorman.tokens.get(made.id)) == made
    await doorman.tokens.revoke(made.id)
    found = await doorman.tokens.get(made.id)
    assert found is not None and found.revoked_at is not None
    for unknown in ("", "0123456789abcdef", "../../etc/passwd", made.id.upper(), made.id + "0"):
        assert await doorman.tokens.get(unknown) is None


async def test_revoke_all_leaves_no_token_made_meanwhile(
    make_doorman: MakeDoorman, alice: User
) -> None:
    """A token making tokens as fast as it can, while the admin revokes them all.

    Without the lock on the user's row, PostgreSQL lets a token be written
    between revoke_all's snapshot and its commit: a way in that survives.
    """
    doorman = await make_doorman()
    minter = await make_doorman()  # another pool, as another worker would have

    async def mint(parent: Token) -> None:
        # At most 9 each: 5 rounds of 4 minters, and the 5 parents, stay under the 200
        # tokens a user may make an hour, which a slow revoke_all (a busy machine) reached.
        for _ in range(9):
            try:
                await minter.tokens.create(alice, within=parent)
            except PermissionDenied:
                return

    for _ in range(5):
        parent, _ = await doorman.tokens.create(alice)
        minting = [asyncio.create_task(mint(parent)) for _ in range(4)]
        await asyncio.sleep(0.01)
        await doorman.tokens.revoke_all(alice)
        await asyncio.wait_for(asyncio.gather(*minting), timeout=30)
        assert await doorman.tokens.list(alice) == [], "a token made meanwhile survived"


@pytest.mark.parametrize(
    ("scopes", "admin"),
    [(None, True), (["admin"], True), (["view", "admin"], True), (["view"], False), ([], False),
     ("admin", False)],
)  # fmt: skip
def test_an_admins_token_has_starlettes_admin_scope_only_when_allowed_admin(
    scopes: object, admin: bool
) -> None:
    actor = {"id": "root", "admin": True, "via": "token"}
    if scopes is not None:
        actor["scopes"] = scopes
    scope: dict[str, object] = {}
    set_actor(scope, actor)
    expected = ["authenticated", "admin"] if admin else ["authenticated"]
    assert scope["auth"].scopes == expected  # type: ignore[attr-defined]


async def test_a_user_has_at_most_max_live_tokens(doorman: Doorman, alice: User) -> None:
    """A leaked token (or session) making tokens in a loop fills no database."""
    made = [(await doorman.tokens.create(alice))[0] for _ in range(MAX_LIVE_TOKENS)]
    with pytest.raises(AccountError, match=f"at most {MAX_LIVE_TOKENS} live"):
        await doorman.tokens.create(alice, within=made[0])
    with pytest.raises(AccountError, match="revoke some first"):
        await doorman.tokens.create(alice)
    assert len(await doorman.tokens.list(alice, include_dead=True)) == MAX_LIVE_TOKENS
    await doorman.tokens.revoke(made[-1].id)
    await doorman.tokens.create(alice)  # revoked ones do not count


async def test_making_and_revoking_tokens_in_a_loop_is_bounded_too(
    doorman: Doorman, alice: User
) -> None:
    """Revoked tokens are not live: a session (or a token revoking what it makes) that
    made and revoked tokens in a loop once stored a row each time, 500 in 5 s, no end."""
    for _ in range(MAX_NEW_TOKENS_AN_HOUR):
        made, _ = await doorman.tokens.create(alice)
        await doorman.tokens.revoke(made.id)
    with pytest.raises(AccountError, match=f"at most {MAX_NEW_TOKENS_AN_HOUR} API tokens an hour"):
        await doorman.tokens.create(alice)
    assert len(await doorman.tokens.list(alice, include_dead=True)) == MAX_NEW_TOKENS_AN_HOUR


async def test_a_burst_of_new_tokens_stays_within_the_limit(
    make_doorman: MakeDoorman, alice: User
) -> None:
    """Without the lock, PostgreSQL let concurrent inserts each count only themselves."""
    doorman, other = await make_doorman(), await make_doorman()
    for _ in range(MAX_LIVE_TOKENS - 5):
        await doorman.tokens.create(alice)

    async def create(via: Doorman) -> bool:
        try:
            await via.tokens.create(alice)
        except AccountError:
            return False
        return True

    made = await asyncio.wait_for(
        asyncio.gather(*(create(doorman if i % 2 else other) for i in range(20))), timeout=30
    )
    assert sum(made) == 5
    assert len(await doorman.tokens.list(alice)) == MAX_LIVE_TOKENS
