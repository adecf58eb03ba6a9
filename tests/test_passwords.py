"""Password hashing (argon2id, Django's formats), the timing defence, and password rules."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import threading
import time
from collections.abc import Iterator

import argon2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doorman.accounts.passwords import (
    MAX_PASSWORD_LENGTH,
    PasswordHasher,
    Verdict,
    _common_passwords,
    is_common_password,
    validate_password,
)
from doorman.exceptions import AccountError, ConfigError

NO = Verdict(ok=False, needs_rehash=False)
PASSWORD = "correct horse battery staple"

# Made by Django 5.2 itself (PBKDF2PasswordHasher().encode and make_password(hasher="argon2")),
# so these do not only mirror doorman's own reading of the format.
DJANGO_PBKDF2 = [
    (
        PASSWORD,
        "pbkdf2_sha256$1000$MiQmvbQGGYYvTTeFSYnmYP$682wCMPOp+3ZDNdrzmNPXpl4X3qnDgoRCXFmWnAPtNU=",
    ),
    (
        "pässwörd ünïcode",
        "pbkdf2_sha256$1000$SaltySalt123$9pB1RitOFof02WLX70iJPzWxN2tIo7+9URIpk1tzarg=",
    ),
]
DJANGO_ARGON2 = (
    "argon2$argon2id$v=19$m=102400,t=2,p=8$aldjVlFQRHY0YzZXRlpBclhobU1iTQ"
    "$WlX1AxonQeJadtOJ90pcfqZBD5Q9oyD8WdySrXI9xhk"
)

# For hypothesis, which takes no function-scoped fixtures; its sync methods start no threads.
FAST = PasswordHasher(time_cost=1, memory_cost=1024)


def django_pbkdf2(password: str, salt: str, iterations: int) -> str:
    """Django's PBKDF2PasswordHasher.encode, written out independently."""
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(key).decode('ascii')}"


@pytest.fixture
def fast() -> Iterator[PasswordHasher]:
    hasher = PasswordHasher(time_cost=1, memory_cost=1024)
    yield hasher
    hasher.close()


@pytest.fixture
def argon2_verifies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every hash argon2-cffi is asked to verify against, in order."""
    seen: list[str] = []
    real = argon2.PasswordHasher.verify

    def spy(self: argon2.PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        seen.append(hash if isinstance(hash, str) else hash.decode())
        return real(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", spy)
    return seen


def parameters_of(hasher: PasswordHasher) -> argon2.Parameters:
    return argon2.extract_parameters(hasher.hash_sync("anything"))


# -- argon2id ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_default_parameters_are_owasp_argon2id() -> None:
    hasher = PasswordHasher()
    try:
        encoded = await hasher.hash(PASSWORD)
        assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert await hasher.verify(PASSWORD, encoded) == Verdict(ok=True, needs_rehash=False)
        assert await hasher.verify(PASSWORD + "!", encoded) == NO
    finally:
        hasher.close()


def test_hash_then_verify(fast: PasswordHasher) -> None:
    encoded = fast.hash_sync(PASSWORD)
    assert encoded.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert fast.verify_sync(PASSWORD, encoded) == Verdict(ok=True, needs_rehash=False)
    assert fast.verify_sync("Correct horse battery staple", encoded) == NO
    assert fast.verify_sync("", encoded) == NO


def test_hashes_are_salted(fast: PasswordHasher) -> None:
    first, second = fast.hash_sync(PASSWORD), fast.hash_sync(PASSWORD)
    assert first != second
    assert fast.verify_sync(PASSWORD, first).ok and fast.verify_sync(PASSWORD, second).ok


@pytest.mark.anyio
async def test_needs_rehash_when_parameters_change(fast: PasswordHasher) -> None:
    stronger = PasswordHasher(time_cost=1, memory_cost=2048)
    try:
        old = await fast.hash(PASSWORD)
        assert await stronger.verify(PASSWORD, old) == Verdict(ok=True, needs_rehash=True)
        assert stronger.needs_rehash(old)
        assert not fast.needs_rehash(old)
        new = await stronger.hash(PASSWORD)
        assert await stronger.verify(PASSWORD, new) == Verdict(ok=True, needs_rehash=False)
    finally:
        stronger.close()


@pytest.mark.parametrize("kind", [argon2.Type.I, argon2.Type.D])
def test_other_argon2_types_verify_and_need_rehash(fast: PasswordHasher, kind: argon2.Type) -> None:
    encoded = argon2.PasswordHasher(time_cost=1, memory_cost=1024, type=kind).hash(PASSWORD)
    assert fast.verify_sync(PASSWORD, encoded) == Verdict(ok=True, needs_rehash=True)
    assert fast.verify_sync("wrong", encoded) == NO


def test_needs_rehash_for_anything_but_argon2(fast: PasswordHasher) -> None:
    assert fast.needs_rehash(DJANGO_PBKDF2[0][1])
    assert fast.needs_rehash(DJANGO_ARGON2)
    assert fast.needs_rehash("$argon2id$nonsense")


def test_argon2_hash_asking_for_absurd_memory_is_refused(
    fast: PasswordHasher, argon2_verifies: list[str]
) -> None:
    huge = "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNo"
    assert fast.verify_sync(PASSWORD, huge) == NO
    # Only the dummy hash was verified against: the stored one never reached argon2.
    assert [argon2.extract_parameters(h) for h in argon2_verifies] == [parameters_of(fast)]


# -- what hash() refuses -----------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("password", ["", "x" * (MAX_PASSWORD_LENGTH + 1), "lone \ud800 surrogate"])
async def test_hash_refuses_empty_too_long_and_broken_text(
    fast: PasswordHasher, password: str
) -> None:
    with pytest.raises(AccountError):
        fast.hash_sync(password)
    with pytest.raises(AccountError):
        await fast.hash(password)


def test_longest_password_is_accepted_and_one_more_is_not(fast: PasswordHasher) -> None:
    longest = "é" * MAX_PASSWORD_LENGTH  # counted in characters, not bytes
    encoded = fast.hash_sync(longest)
    assert fast.verify_sync(longest, encoded).ok
    assert fast.verify_sync(longest + "é", encoded) == NO
    assert fast.verify_sync("lone \ud800 surrogate", encoded) == NO


# -- Django's formats --------------------------------------------------------------------------


@pytest.mark.parametrize(("password", "encoded"), DJANGO_PBKDF2)
def test_django_pbkdf2_made_by_django(fast: PasswordHasher, password: str, encoded: str) -> None:
    assert fast.verify_sync(password, encoded) == Verdict(ok=True, needs_rehash=True)
    assert fast.verify_sync(password.upper(), encoded) == NO


@pytest.mark.anyio
@pytest.mark.parametrize(("salt", "iterations"), [("abc", 1), ("x7Yq2LmN0pR4sT6v", 260_000)])
async def test_django_pbkdf2_computed_independently(
    fast: PasswordHasher, salt: str, iterations: int
) -> None:
    encoded = django_pbkdf2(PASSWORD, salt, iterations)
    assert await fast.verify(PASSWORD, encoded) == Verdict(ok=True, needs_rehash=True)
    assert await fast.verify("wrong", encoded) == NO


@pytest.mark.parametrize(
    "tampered",
    [
        "pbkdf2_sha256$1001$MiQmvbQGGYYvTTeFSYnmYP$682wCMPOp+3ZDNdrzmNPXpl4X3qnDgoRCXFmWnAPtNU=",
        "pbkdf2_sha256$1000$MiQmvbQGGYYvTTeFSYnmYQ$682wCMPOp+3ZDNdrzmNPXpl4X3qnDgoRCXFmWnAPtNU=",
        "pbkdf2_sha256$1000$MiQmvbQGGYYvTTeFSYnmYP$682wCMPOp+3ZDNdrzmNPXpl4X3qnDgoRCXFmWnAPtNV=",
    ],
)
def test_django_pbkdf2_tampered(fast: PasswordHasher, tampered: str) -> None:
    assert fast.verify_sync(PASSWORD, tampered) == NO


GOOD_KEY = DJANGO_PBKDF2[0][1].rsplit("$", 1)[1]


@pytest.mark.parametrize(
    "malformed",
    [
        f"pbkdf2_sha256$abc$MiQmvbQGGYYvTTeFSYnmYP${GOOD_KEY}",
        "pbkdf2_sha256$1000$MiQmvbQGGYYvTTeFSYnmYP",
        "pbkdf2_sha256$1000",
        "pbkdf2_sha256$",
        f"pbkdf2_sha256$1000$MiQmvbQGGYYvTTeFSYnmYP${GOOD_KEY}$extra",
        f"pbkdf2_sha256$0$MiQmvbQGGYYvTTeFSYnmYP${GOOD_KEY}",
        f"pbkdf2_sha256$-1000$MiQmvbQGGYYvTTeFSYnmYP${GOOD_KEY}",
        f"pbkdf2_sha256$10000001$MiQmvbQGGYYvTTeFSYnmYP${GOOD_KEY}",
        f"pbkdf2_sha256${'9' * 5000}$MiQmvbQGGYYvTTeFSYnmYP${GOOD_KEY}",
        # 1000 in Arabic-Indic digits, which int() would accept:
        f"pbkdf2_sha256$\u0661\u0660\u0660\u0660$MiQmvbQGGYYvTTeFSYnmYP${GOOD_KEY}",
        f"pbkdf2_sha256$ 1000$MiQmvbQGGYYvTTeFSYnmYP${GOOD_KEY}",
        f"pbkdf2_sha256$1000$${GOOD_KEY}",
        "pbkdf2_sha256$1000$MiQmvbQGGYYvTTeFSYnmYP$",
        f"pbkdf2_sha256$1000$MiQmvbQGGYYvTTeFSYnmYé${GOOD_KEY}",
        "pbkdf2_sha256$1000$MiQmvbQGGYYvTTeFSYnmYP$682wCMPOp+3ZDNdrzmNPXpl4X3qnDgoRCXFmWnAPtNé=",
        "pbkdf2_sha256$1000$MiQmvbQGGYYvTTeFSYnmYP$\ud800",
    ],
)
def test_django_pbkdf2_malformed_is_refused_quietly(fast: PasswordHasher, malformed: str) -> None:
    assert fast.verify_sync(PASSWORD, malformed) == NO


def test_malformed_stored_hash_is_logged_without_secrets(
    fast: PasswordHasher, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="doorman.auth"):
        assert fast.verify_sync(PASSWORD, "pbkdf2_sha256$99999999$salt$key") == NO
        assert fast.verify_sync(PASSWORD, "$argon2id$v=19$m=9999999,t=1,p=1$c2FsdA$a2V5a2V5") == NO
    assert [r.getMessage() for r in caplog.records] == [
        "a stored pbkdf2_sha256 password hash is malformed or too costly to check",
        "a stored argon2 password hash is malformed or too costly to check",
    ]


def test_empty_password_never_matches(fast: PasswordHasher) -> None:
    # Django can hash "", but doorman cannot store it again, so it is not a way in.
    assert fast.verify_sync("", django_pbkdf2("", "salt", 1)) == NO


def test_django_argon2_verifies_and_needs_rehash(fast: PasswordHasher) -> None:
    assert fast.verify_sync(PASSWORD, DJANGO_ARGON2) == Verdict(ok=True, needs_rehash=True)
    assert fast.verify_sync("wrong", DJANGO_ARGON2) == NO
    made_here = "argon2" + fast.hash_sync(PASSWORD)
    assert fast.verify_sync(PASSWORD, made_here) == Verdict(ok=True, needs_rehash=True)


# -- unusable hashes and the timing defence ----------------------------------------------------

UNUSABLE = [
    None,
    "",
    "!unusable",
    "!Xk3lTq0cYbW8mZ2uJ5aR9sV1nP4eH7gF6dC0iL",  # Django's make_password(None)
    "md5$salt$5f4dcc3b5aa765d61d8327deb882cf99",
    "sha1$salt$hash",
    "bcrypt_sha256$$2b$12$hash",
    "$argon2id$nonsense",
    "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$",
    "$argon2id$v=19$m=\u0661\u0660\u0662\u0664,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNo",
    "argon2$argon2id$",
    "pbkdf2_sha256$abc$salt$hash",
]


@pytest.mark.anyio
@pytest.mark.parametrize("encoded", UNUSABLE)
async def test_unusable_hash_is_refused_at_the_cost_of_a_verify(
    fast: PasswordHasher, argon2_verifies: list[str], encoded: str | None
) -> None:
    assert await fast.verify(PASSWORD, encoded) == NO
    assert fast.verify_sync(PASSWORD, encoded) == NO
    # Each time ends with an argon2 verify against the dummy, made with the hasher's parameters.
    dummy = argon2_verifies[-1]
    assert argon2.extract_parameters(dummy) == parameters_of(fast)
    assert argon2_verifies.count(dummy) == 2


@pytest.mark.anyio
async def test_burn_verifies_against_a_hash_with_the_hashers_parameters(
    argon2_verifies: list[str],
) -> None:
    hasher = PasswordHasher()
    try:
        await hasher.burn(PASSWORD)
        await hasher.burn("another guess")
        expected = parameters_of(hasher)
        assert expected.memory_cost == 19456
        assert [argon2.extract_parameters(h) for h in argon2_verifies] == [expected] * 2
        assert argon2_verifies[0] == argon2_verifies[1]  # one dummy, made once
    finally:
        hasher.close()


# -- threads and event loops -------------------------------------------------------------------


@pytest.mark.anyio
async def test_concurrency_is_bounded_and_loop_stays_responsive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, max_concurrency=2)
    encoded = hasher.hash_sync(PASSWORD)
    lock = threading.Lock()
    running = peak = 0
    workers: set[threading.Thread] = set()
    real = hasher.verify_sync

    def tracked(password: str, stored: str | None) -> Verdict:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            workers.add(threading.current_thread())
        try:
            time.sleep(0.05)
            return real(password, stored)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(hasher, "verify_sync", tracked)
    ticks_while_hashing = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks_while_hashing
        while not done.is_set():
            ticks_while_hashing += running > 0
            await asyncio.sleep(0.005)

    ticking = asyncio.create_task(ticker())
    verdicts = await asyncio.gather(*(hasher.verify(PASSWORD, encoded) for _ in range(8)))
    done.set()
    await ticking
    hasher.close()

    assert all(verdict.ok for verdict in verdicts)
    assert peak == 2
    assert ticks_while_hashing >= 5
    assert len(workers) == 2
    assert all(t.name.startswith("doorman-hash") for t in workers)
    assert not any(t.is_alive() for t in workers)  # close() shut them down


@pytest.mark.anyio
async def test_new_hashes_leave_threads_for_sign_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of registrations takes half the threads at most: a sign-in never queues behind."""
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, max_concurrency=4)
    encoded = hasher.hash_sync(PASSWORD)
    lock, go_on = threading.Lock(), threading.Event()
    running = peak = 0
    real = hasher.hash_sync

    def held(password: str) -> str:  # each new hash waits until the sign-in is done
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            go_on.wait(timeout=10)
            return real(password)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(hasher, "hash_sync", held)
    registrations = [asyncio.ensure_future(hasher.hash(f"password {n}")) for n in range(8)]
    try:
        for _ in range(500):  # until the new hashes hold what they may (5 s at most)
            if running >= 2:
                break
            await asyncio.sleep(0.01)
        verdict = await asyncio.wait_for(hasher.verify(PASSWORD, encoded), 5)
    finally:
        go_on.set()
        await asyncio.gather(*registrations)
        hasher.close()
    assert verdict.ok
    assert peak == 2


def test_one_hasher_serves_several_event_loops(fast: PasswordHasher) -> None:
    encoded = asyncio.run(fast.hash(PASSWORD))
    assert asyncio.run(fast.verify(PASSWORD, encoded)).ok
    assert not asyncio.run(fast.verify("wrong", encoded)).ok


@pytest.mark.anyio
async def test_close_is_idempotent_and_a_later_call_starts_new_threads(
    fast: PasswordHasher,
) -> None:
    encoded = await fast.hash(PASSWORD)
    fast.close()
    fast.close()
    assert (await fast.verify(PASSWORD, encoded)).ok


@pytest.mark.parametrize(
    "options",
    [
        {"max_concurrency": 0},
        {"time_cost": 0},
        {"parallelism": 0},
        {"memory_cost": 15, "parallelism": 2},
    ],
)
def test_bad_parameters_fail_at_construction(options: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        PasswordHasher(**options)


ENCODED = st.one_of(
    st.none(),
    st.text(),
    st.builds(
        str.__add__,
        st.sampled_from(
            [
                "$argon2id$",
                "$argon2i$v=19$m=",
                "argon2$argon2id$",
                "pbkdf2_sha256$",
                "pbkdf2_sha256$1$",
            ]
        ),
        st.text(),
    ),
)


@settings(max_examples=100, deadline=None)
@given(password=st.text(max_size=200), encoded=ENCODED)
def test_verify_never_raises(password: str, encoded: str | None) -> None:
    verdict = FAST.verify_sync(password, encoded)
    assert isinstance(verdict, Verdict)
    assert not verdict.ok


# -- validate_password -------------------------------------------------------------------------


SIMILAR_TO_EMAIL = "is too similar to the email address"


def test_good_password_has_no_problems() -> None:
    assert validate_password("velvet-harbour-lantern", username="alice", email="alice@ex.com") == []
    assert validate_password("Ünïcödé✓✓✓") == []  # ten characters, more bytes


@pytest.mark.parametrize(
    ("password", "options", "problem"),
    [
        ("Xk9#mQ2v", {}, "is shorter than 10 characters"),
        ("Xk9#mQ2vLp", {"min_length": 12}, "is shorter than 12 characters"),
        ("x" * 1025, {}, "is longer than 1024 characters"),
        ("Xk9#mQ2vLpZ", {"max_length": 10}, "is longer than 10 characters"),
        ("8273645192", {}, "is entirely numeric"),
        ("password", {"min_length": 1}, "is one of the 20,000 most common passwords"),
        ("  PassWord1 ", {"min_length": 1}, "is one of the 20,000 most common passwords"),
        ("Alexander-2024!", {"username": "alexander"}, "is too similar to the username"),
        ("margarethe1", {"username": "Margaretha"}, "is too similar to the username"),
        ("alice2024", {"username": "alice", "min_length": 9}, "is too similar to the username"),
        ("jsmithson-2!", {"email": "jsmithson@example.com"}, SIMILAR_TO_EMAIL),
        ("jane.doe@exampl", {"email": "jane.doe@example.com"}, SIMILAR_TO_EMAIL),
        ("examplecom12", {"email": "zq@example.com"}, SIMILAR_TO_EMAIL),  # a word of the domain
    ],
)
def test_each_rule(password: str, options: dict[str, object], problem: str) -> None:
    assert validate_password(password, **options) == [problem]  # type: ignore[arg-type]


def test_problems_accumulate() -> None:
    assert validate_password("123456", username="123456") == [
        "is shorter than 10 characters",
        "is entirely numeric",
        "is one of the 20,000 most common passwords",
        "is too similar to the username",
    ]


@pytest.mark.parametrize(
    ("password", "options"),
    [
        # The tester's examples, which Django's UserAttributeSimilarityValidator accepts too:
        # a username inside a longer password is not, by itself, too similar.
        ("planning the summer", {"username": "ann"}),
        ("alice wonderland 42", {"username": "alice"}),
        ("alice wonderland 42", {"email": "alice@example.com"}),
        ("alice2024!", {"username": "alice"}),  # a quick ratio of 10/15, under 0.7
        ("JaneDoe-1984x", {"email": "jane.doe@example.com"}),
        ("abstract-harbour-9", {"username": "ab"}),
        ("example-harbour-22", {"email": "zq@example.com"}),
        ("password123", {"check_common": False, "min_length": 1}),
    ],
)
def test_what_django_accepts_is_accepted(password: str, options: dict[str, object]) -> None:
    assert validate_password(password, **options) == []  # type: ignore[arg-type]


def test_similarity_is_djangos_quick_ratio_of_value_and_words() -> None:
    def similar(password: str, value: str) -> bool:
        return validate_password(password, username=value, min_length=1) != []

    # 2 * 5 common letters / (9 + 5) = 0.714: at or over 0.7 is too similar; just under is not.
    assert similar("alice2024", "alice") and not similar("alice2024!", "alice")
    assert similar("ALICE2024", "alice")  # case does not matter
    assert similar("harbour-doe", "jane.harbour")  # a word of the value: "harbour"


def test_common_password_list() -> None:
    common = _common_passwords()
    assert 19_000 <= len(common) <= 20_000
    assert {"password", "123456", "qwerty"} <= common
    assert all(entry == entry.strip().lower() and entry for entry in common)
    assert is_common_password("PASSWORD")
    assert is_common_password(" 123456\n")
    assert not is_common_password("velvet-harbour-lantern")
