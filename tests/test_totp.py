"""TOTP and recovery codes on SQLite and PostgreSQL: window edges, replay, races, throttling."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time

import pyotp
import pytest
import sqlalchemy as sa

from doorman.accounts.recovery_codes import CODE_COUNT, normalize_recovery_code
from doorman.accounts.throttle import ThrottleLimits
from doorman.accounts.totp import STEP, normalize_code
from doorman.accounts.users import User
from doorman.core import BAD_CODE, Doorman
from doorman.db import connect
from doorman.db.schema import events_table, recovery_codes_table, totp_table
from doorman.events import EventKind
from doorman.exceptions import AccountError, AuthenticationFailed, Throttled

from .test_accounts import PASSWORD, MakeDoorman
from .test_accounts import db_url as db_url  # fixtures, used by name
from .test_accounts import doorman as doorman
from .test_accounts import make_doorman as make_doorman
from .test_accounts import migrated_postgres_url as migrated_postgres_url
from .test_accounts import migrated_sqlite as migrated_sqlite
from .test_accounts import shared_doorman as shared_doorman

pytestmark = pytest.mark.anyio

#: A moment in the middle of a step, so that "one step later" is unambiguous.
T0 = 1_700_000_015.0


@pytest.fixture
async def alice(doorman: Doorman) -> User:
    return await doorman.users.create("alice", password=PASSWORD)


async def enrol(doorman: Doorman, user: User, at: float = T0) -> pyotp.TOTP:
    secret = await doorman.totp.start(user)
    totp = pyotp.TOTP(secret)
    assert await doorman.totp.confirm(user, totp.at(at), at=at)
    return totp


async def events_of(doorman: Doorman, kind: str) -> list[dict[str, object]]:
    await doorman.events.flush()
    query = sa.select(events_table).where(events_table.c.kind == kind)
    async with connect(doorman.engine) as connection:
        return [dict(row) for row in (await connection.execute(query)).mappings()]


# -- TOTP ----------------------------------------------------------------------------------


async def test_a_secret_is_160_bits_and_its_uri_names_the_site_and_the_person(
    doorman: Doorman, alice: User
) -> None:
    secret = await doorman.totp.start(alice)
    assert len(base64.b32decode(secret)) == 20  # 160 bits
    uri = doorman.totp.provisioning_uri(secret, username="alice", issuer="Example Site")
    assert uri.startswith("otpauth://totp/Example%20Site:alice?")
    assert f"secret={secret}" in uri and "issuer=Example%20Site" in uri
    parsed = pyotp.parse_uri(uri)
    assert parsed.digits == 6 and parsed.interval == STEP and parsed.secret == secret


async def test_totp_is_on_only_after_a_correct_code(doorman: Doorman, alice: User) -> None:
    secret = await doorman.totp.start(alice)
    assert not await doorman.totp.enabled(alice)
    assert not (await doorman.second_factors(alice)).any
    assert not await doorman.totp.verify(alice, pyotp.TOTP(secret).at(T0), at=T0)  # not on yet
    wrong = f"{(int(pyotp.TOTP(secret).at(T0)) + 1) % 1_000_000:06d}"
    assert not await doorman.totp.confirm(alice, wrong, at=T0)
    assert not await doorman.totp.enabled(alice)
    assert await doorman.totp.confirm(alice, pyotp.TOTP(secret).at(T0), at=T0)
    assert await doorman.totp.enabled(alice)
    assert (await doorman.second_factors(alice)).totp


async def test_the_confirming_code_cannot_sign_in_again(doorman: Doorman, alice: User) -> None:
    totp = await enrol(doorman, alice)
    assert not await doorman.totp.verify(alice, totp.at(T0), at=T0)
    assert await doorman.totp.verify(alice, totp.at(T0 + STEP), at=T0 + STEP)


async def test_starting_again_replaces_an_unconfirmed_secret_and_refuses_while_on(
    doorman: Doorman, alice: User
) -> None:
    first = await doorman.totp.start(alice)
    second = await doorman.totp.start(alice)
    assert first != second
    assert not await doorman.totp.confirm(alice, pyotp.TOTP(first).at(T0), at=T0)
    assert await doorman.totp.confirm(alice, pyotp.TOTP(second).at(T0), at=T0)
    with pytest.raises(AccountError):
        await doorman.totp.start(alice)
    assert await doorman.totp.enabled(alice)  # the factor in use stays on


@pytest.mark.parametrize("offset", [-1, 0, 1])
async def test_a_code_one_step_either_side_is_accepted(
    doorman: Doorman, alice: User, offset: int
) -> None:
    totp = await enrol(doorman, alice, at=T0 - 10 * STEP)
    at = T0 + offset * STEP
    assert await doorman.totp.verify(alice, totp.at(at), at=T0)


@pytest.mark.parametrize("offset", [-2, 2, -3, 3])
async def test_a_code_two_steps_away_is_refused(doorman: Doorman, alice: User, offset: int) -> None:
    totp = await enrol(doorman, alice, at=T0 - 10 * STEP)
    at = T0 + offset * STEP
    if totp.at(at) in {totp.at(T0 + k * STEP) for k in (-1, 0, 1)}:
        pytest.skip("the two codes happen to be equal")  # one chance in about 333,000
    assert not await doorman.totp.verify(alice, totp.at(at), at=T0)


async def test_a_code_is_never_taken_twice_nor_an_older_one_after_it(
    doorman: Doorman, alice: User
) -> None:
    totp = await enrol(doorman, alice, at=T0 - 10 * STEP)
    assert await doorman.totp.verify(alice, totp.at(T0), at=T0)
    assert not await doorman.totp.verify(alice, totp.at(T0), at=T0)  # replay, same step
    assert not await doorman.totp.verify(alice, totp.at(T0), at=T0 + STEP)  # still in the window
    assert not await doorman.totp.verify(alice, totp.at(T0 - STEP), at=T0)  # older
    assert await doorman.totp.verify(alice, totp.at(T0 + STEP), at=T0 + STEP)


async def test_a_code_from_the_next_step_spends_the_current_one(
    doorman: Doorman, alice: User
) -> None:
    totp = await enrol(doorman, alice, at=T0 - 10 * STEP)
    assert await doorman.totp.verify(alice, totp.at(T0 + STEP), at=T0)
    assert not await doorman.totp.verify(alice, totp.at(T0), at=T0)


async def test_the_real_clock(doorman: Doorman, alice: User) -> None:
    secret = await doorman.totp.start(alice)
    assert await doorman.totp.confirm(alice, pyotp.TOTP(secret).now())
    # The confirming code's step is taken: the next step's code (accepted early) signs in.
    assert await doorman.totp.verify(alice, pyotp.TOTP(secret).at(time.time() + STEP))
    assert not await doorman.totp.verify(alice, pyotp.TOTP(secret).now())


async def test_two_doormans_racing_with_one_code_exactly_one_wins(
    make_doorman: MakeDoorman,
) -> None:
    """Two workers (two Doorman objects, two engines) given the same code at once."""
    first, second = await make_doorman(), await make_doorman()
    alice = await first.users.create("alice", password=PASSWORD)
    totp = await enrol(first, alice, at=T0 - 10 * STEP)
    for round_ in range(5):
        at = T0 + round_ * STEP
        code = totp.at(at)
        results = await asyncio.gather(
            *(d.totp.verify(alice, code, at=at) for d in (first, second, first, second))
        )
        assert sorted(results) == [False, False, False, True]


async def test_turned_off_the_secret_is_gone(doorman: Doorman, alice: User) -> None:
    totp = await enrol(doorman, alice)
    assert await doorman.totp.disable(alice)
    assert not await doorman.totp.verify(alice, totp.at(T0 + STEP), at=T0 + STEP)
    async with connect(doorman.engine) as connection:
        assert (await connection.execute(sa.select(totp_table))).first() is None
    assert not await doorman.totp.disable(alice)


@pytest.mark.parametrize(
    "code",
    [
        "",
        "12345",
        "1234567",
        "12345a",
        "\u0661\u0662\u0663\u0664\u0665\u0666",
        "\uff11\uff12\uff13\uff14\uff15\uff16",
        "1" * 10_000,
        "12\x0034",
        None,
        123456,
    ],
)
def test_what_is_not_six_ascii_digits_is_no_code(code: object) -> None:
    assert normalize_code(code) is None


def test_spaces_in_a_code_are_forgiven() -> None:
    assert normalize_code("123 456") == "123456"


# -- recovery codes ------------------------------------------------------------------------


async def test_ten_codes_each_works_once_and_only_for_its_account(
    doorman: Doorman, alice: User
) -> None:
    bob = await doorman.users.create("bob", password=PASSWORD)
    codes = await doorman.recovery_codes.regenerate(alice)
    assert len(codes) == len(set(codes)) == CODE_COUNT
    for code in codes:
        assert len(code) == 19 and code.count("-") == 3
        assert not set(code.replace("-", "")) & set("ilou")
    assert not await doorman.recovery_codes.use(bob, codes[0])
    assert await doorman.recovery_codes.use(alice, codes[0])
    assert not await doorman.recovery_codes.use(alice, codes[0])
    assert await doorman.recovery_codes.remaining(alice) == CODE_COUNT - 1
    assert (await doorman.second_factors(alice)).recovery_codes == CODE_COUNT - 1


async def test_codes_are_stored_hashed_and_salted_with_the_account(
    doorman: Doorman, alice: User
) -> None:
    codes = await doorman.recovery_codes.regenerate(alice)
    async with connect(doorman.engine) as connection:
        stored = [r.code_hash for r in await connection.execute(sa.select(recovery_codes_table))]
    assert len(stored) == CODE_COUNT
    for code in codes:
        bare = code.replace("-", "")
        assert all(bare not in h and code not in h for h in stored)
    unsalted = {hashlib.sha256(c.replace("-", "").encode()).hexdigest() for c in codes}
    assert not unsalted & set(stored)


async def test_input_is_forgiven_its_case_spaces_dashes_and_look_alikes(
    doorman: Doorman, alice: User
) -> None:
    codes = await doorman.recovery_codes.regenerate(alice)
    typed = " " + codes[0].upper().replace("-", " ").replace("0", "O").replace("1", "l") + " "
    assert await doorman.recovery_codes.use(alice, typed)


async def test_regenerating_ends_the_old_codes(doorman: Doorman, alice: User) -> None:
    old = await doorman.recovery_codes.regenerate(alice)
    new = await doorman.recovery_codes.regenerate(alice)
    assert not set(old) & set(new)
    assert not await doorman.recovery_codes.use(alice, old[1])
    assert await doorman.recovery_codes.use(alice, new[1])


async def test_two_doormans_racing_with_one_recovery_code_exactly_one_wins(
    make_doorman: MakeDoorman,
) -> None:
    first, second = await make_doorman(), await make_doorman()
    alice = await first.users.create("alice", password=PASSWORD)
    codes = await first.recovery_codes.regenerate(alice)
    for code in codes[:3]:
        results = await asyncio.gather(
            *(d.recovery_codes.use(alice, code) for d in (first, second, first, second))
        )
        assert sorted(results) == [False, False, False, True]


@pytest.mark.parametrize(
    "code",
    [
        "",
        "abcd",
        "x" * 100_000,
        "abcd-efgh-jkmn-pqr!",
        "\uff71\uff72\uff73\uff74-" * 4,
        None,
        ["a"],
    ],
)
def test_what_cannot_be_a_recovery_code_is_none(code: object) -> None:
    assert normalize_recovery_code(code) is None


# -- verify_second_factor ------------------------------------------------------------------


async def test_a_totp_or_a_recovery_code_proves_otp_and_a_wrong_one_is_logged(
    doorman: Doorman, alice: User
) -> None:
    secret = await doorman.totp.start(alice)
    assert await doorman.totp.confirm(alice, pyotp.TOTP(secret).now())
    codes = await doorman.recovery_codes.regenerate(alice)
    assert await doorman.verify_second_factor(alice, codes[0], client="192.0.2.1") == "otp"
    with pytest.raises(AuthenticationFailed, match=BAD_CODE):
        await doorman.verify_second_factor(alice, codes[0], client="192.0.2.1")
    used = await events_of(doorman, EventKind.RECOVERY_CODE_USED)
    failed = await events_of(doorman, EventKind.TWO_FACTOR_FAILED)
    assert [e["user_id"] for e in used] == [alice.id] and len(failed) == 1
    assert used[0]["address"] == "192.0.2.1"
    for event in used + failed:  # no code in the log
        assert codes[0] not in str(event) and codes[0].replace("-", "") not in str(event)
    next_step = pyotp.TOTP(secret).at(time.time() + STEP)
    assert await doorman.verify_second_factor(alice, next_step, client=None) == "otp"


async def test_wrong_codes_are_throttled_per_account_apart_from_passwords(
    make_doorman: MakeDoorman,
) -> None:
    doorman = await make_doorman(throttle_limits=ThrottleLimits(per_account=3))
    alice = await doorman.users.create("alice", password=PASSWORD)
    bob = await doorman.users.create("bob", password=PASSWORD)
    secret = await doorman.totp.start(alice)
    assert await doorman.totp.confirm(alice, pyotp.TOTP(secret).now())
    for _ in range(3):
        with pytest.raises(AuthenticationFailed) as refused:
            await doorman.verify_second_factor(alice, "000000", client="192.0.2.1")
        assert not isinstance(refused.value, Throttled)
    with pytest.raises(Throttled) as throttled:  # even the right code, from another address
        next_step = pyotp.TOTP(secret).at(time.time() + STEP)
        await doorman.verify_second_factor(alice, next_step, client="198.51.100.7")
    assert throttled.value.status_code == 429 and throttled.value.retry_after > 0
    # The password is counted apart, and so is another account.
    assert (await doorman.authenticate("alice", PASSWORD, client="192.0.2.1")).id == alice.id
    with pytest.raises(AuthenticationFailed) as other:
        await doorman.verify_second_factor(bob, "000000", client="192.0.2.1")
    assert not isinstance(other.value, Throttled)


@pytest.mark.parametrize(
    "code", ["", " ", "x" * 1_000_000, "\u202e123456", "\uff11\uff12\uff13\uff14\uff15\uff16"]
)
async def test_odd_codes_are_wrong_codes(doorman: Doorman, alice: User, code: str) -> None:
    await enrol(doorman, alice)
    await doorman.recovery_codes.regenerate(alice)
    with pytest.raises(AuthenticationFailed):
        await doorman.verify_second_factor(alice, code, client=None)


async def test_turned_off_on_one_worker_it_is_refused_on_the_other(
    make_doorman: MakeDoorman,
) -> None:
    first, second = await make_doorman(), await make_doorman()
    alice = await first.users.create("alice", password=PASSWORD)
    totp = await enrol(first, alice, at=T0 - 10 * STEP)
    assert await second.totp.verify(alice, totp.at(T0), at=T0)
    assert await first.totp.disable(alice)
    assert not await second.totp.verify(alice, totp.at(T0 + STEP), at=T0 + STEP)
    assert not (await second.second_factors(alice)).any
