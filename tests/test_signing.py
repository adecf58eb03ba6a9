"""doorman.signing: HMAC-SHA256 signatures, key rotation, salts, timestamps, JSON."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from doorman import BadSignature, ConfigError, JSONSigner, SignatureExpired, Signer, TimestampSigner
from doorman.signing import MIN_SECRET_LENGTH, b64decode, b64encode

OLD = "old-secret-" + "o" * 32
NEW = "new-secret-" + "n" * 32

SIGNER_CLASSES = [Signer, TimestampSigner]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


# -- round trips --------------------------------------------------------------


@pytest.mark.parametrize("cls", SIGNER_CLASSES)
@pytest.mark.parametrize("value", ["", "alice", "a.b.c", "naïve ☃ 🍪", "x" * 5000, "; = ,"])
def test_round_trip(cls: type[Signer], value: str) -> None:
    signer = cls(NEW)
    signed = signer.sign(value)
    assert signed != value
    assert signer.unsign(signed) == value


def test_signed_value_is_value_dot_mac() -> None:
    signed = Signer(NEW).sign("alice")
    value, _, mac = signed.rpartition(".")
    assert value == "alice"
    assert len(mac) == 43  # unpadded URL-safe base64 of 32 bytes
    assert mac.isascii()
    assert "=" not in mac


def test_a_truncated_mac_is_128_bits_and_still_refuses_tampering() -> None:
    signer = Signer(NEW, digest_size=16)
    signed = signer.sign("alice")
    value, _, mac = signed.rpartition(".")
    assert value == "alice"
    assert len(mac) == 22  # unpadded URL-safe base64 of 16 bytes
    assert signer.unsign(signed) == "alice"
    for forged in ("alicf." + mac, signed[:-1], signed + "A", f"alice.{mac[:-1]}B"):
        with pytest.raises(BadSignature):
            signer.unsign(forged)


def test_a_truncated_mac_has_a_key_of_its_own() -> None:
    # Not the full MAC cut short: one length's MAC never verifies under another.
    full, short = Signer(NEW, salt="s"), Signer(NEW, salt="s", digest_size=16)
    full_mac = full.sign("alice").rpartition(".")[2]
    short_mac = short.sign("alice").rpartition(".")[2]
    assert not full_mac.startswith(short_mac[:21])
    with pytest.raises(BadSignature):
        short.unsign(f"alice.{full_mac}")
    with pytest.raises(BadSignature):
        full.unsign(f"alice.{short_mac}")
    with pytest.raises(BadSignature):  # nor truncated by hand
        short.unsign(f"alice.{b64encode(b64decode(full_mac)[:16])}")


@pytest.mark.parametrize("size", [0, 8, 15, 33, 64])
def test_a_mac_under_128_bits_or_over_sha256_is_a_config_error(size: int) -> None:
    with pytest.raises(ConfigError, match="digest_size"):
        Signer(NEW, digest_size=size)


def test_unsign_newest_says_which_secret_signed() -> None:
    signer = Signer([NEW, OLD], digest_size=16)
    assert signer.unsign_newest(signer.sign("alice")) == ("alice", True)
    old = Signer(OLD, digest_size=16).sign("alice")
    assert signer.unsign_newest(old) == ("alice", False)
    with pytest.raises(BadSignature):
        signer.unsign_newest(Signer(OLD).sign("alice"))


@pytest.mark.parametrize("text", ["YQ", "YWI", "_-8", "Pz8-"])
def test_b64decode_reads_unpadded_url_safe_base64(text: str) -> None:
    import base64

    assert b64decode(text) == base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    assert b64encode(b64decode(text)) == text


@pytest.mark.parametrize("garbage", ["Y", "YQ!", "Y Q", "YQ=x", "☃", "YQ\n"])
def test_b64decode_skips_nothing_it_cannot_read(garbage: str) -> None:
    with pytest.raises(BadSignature):
        b64decode(garbage)


def test_signing_is_deterministic_and_depends_on_the_value() -> None:
    signer = Signer(NEW)
    assert signer.sign("alice") == signer.sign("alice")
    assert signer.sign("alice") != signer.sign("alicf")


@pytest.mark.parametrize(
    "obj", [None, 0, -1.5, "text", ["a", 1, None], {"user": "alice", "roles": ["admin"]}]
)
def test_json_round_trip(obj: object) -> None:
    signer = JSONSigner(NEW)
    signed = signer.dumps(obj)
    assert signed.isascii()
    assert ";" not in signed
    assert " " not in signed  # cookie- and URL-safe
    assert signer.loads(signed) == obj


def test_json_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(ValueError):
        JSONSigner(NEW).dumps(float("nan"))
    with pytest.raises(TypeError):
        JSONSigner(NEW).dumps({1, 2})


# -- damaged values -----------------------------------------------------------


def _flip(text: str, index: int) -> str:
    replacement = "B" if text[index] != "B" else "C"
    return text[:index] + replacement + text[index + 1 :]


@pytest.mark.parametrize("cls", SIGNER_CLASSES)
def test_tampered_value_is_refused(cls: type[Signer]) -> None:
    signer = cls(NEW)
    signed = signer.sign("user=alice")
    with pytest.raises(BadSignature):
        signer.unsign(signed.replace("alice", "admin"))
    with pytest.raises(BadSignature):
        signer.unsign(_flip(signed, 0))


@pytest.mark.parametrize("cls", SIGNER_CLASSES)
def test_tampered_mac_is_refused(cls: type[Signer]) -> None:
    signer = cls(NEW)
    signed = signer.sign("alice")
    for index in (-1, -2, -20, -43):
        with pytest.raises(BadSignature):
            signer.unsign(_flip(signed, len(signed) + index))


@pytest.mark.parametrize("cls", SIGNER_CLASSES)
def test_every_truncation_is_refused(cls: type[Signer]) -> None:
    signer = cls(NEW)
    signed = signer.sign("alice")
    for end in range(len(signed)):
        with pytest.raises(BadSignature):
            signer.unsign(signed[:end])
    for start in range(1, len(signed)):
        with pytest.raises(BadSignature):
            signer.unsign(signed[start:])


@pytest.mark.parametrize("cls", SIGNER_CLASSES)
@pytest.mark.parametrize(
    "garbage",
    [
        "",
        ".",
        "..",
        "alice",
        "alice.",
        ".mac",
        "no separator at all",
        "alice.mäc",
        "ålice.☃",
        "\x00",
    ],
)
def test_garbage_is_refused(cls: type[Signer], garbage: str) -> None:
    with pytest.raises(BadSignature):
        cls(NEW).unsign(garbage)


def test_non_ascii_mac_is_refused_not_crashed() -> None:
    signer = Signer(NEW)
    signed = signer.sign("alice")
    with pytest.raises(BadSignature, match="ASCII"):
        signer.unsign(signed[:-1] + "é")


def test_timestamp_signer_needs_a_timestamp() -> None:
    # A good signature (same key, same salt) over a value with no timestamp in it.
    plain = Signer(NEW, salt="ts")
    stamped = TimestampSigner(NEW, salt="ts")
    for value in ["alice", "alice.", "alice.12x", "alice.-5", "alice." + "9" * 13, "alice.²"]:
        with pytest.raises(BadSignature, match="timestamp"):
            stamped.unsign(plain.sign(value))


def test_json_signer_refuses_a_good_signature_over_bad_json() -> None:
    stamped = TimestampSigner(NEW, salt="doorman.json")
    for payload in ["not base64!", b64encode(b"{not json"), b64encode(b"\xff\xfe")]:
        with pytest.raises(BadSignature):
            JSONSigner(NEW).loads(stamped.sign(payload))


# -- key rotation -------------------------------------------------------------


@pytest.mark.parametrize("cls", SIGNER_CLASSES)
def test_key_rotation(cls: type[Signer]) -> None:
    signed_with_old = cls(OLD).sign("alice")
    rotated = cls([NEW, OLD])
    assert rotated.unsign(signed_with_old) == "alice"
    signed_after_rotation = rotated.sign("alice")
    assert cls(NEW).unsign(signed_after_rotation) == "alice"  # the newest signs
    with pytest.raises(BadSignature):
        cls(OLD).unsign(signed_after_rotation)
    with pytest.raises(BadSignature):
        cls([NEW]).unsign(signed_with_old)  # old secret removed: its values die


def test_json_key_rotation() -> None:
    signed = JSONSigner(OLD).dumps({"user": "alice"})
    assert JSONSigner([NEW, OLD]).loads(signed) == {"user": "alice"}
    with pytest.raises(BadSignature):
        JSONSigner(NEW).loads(signed)


def test_bytes_and_str_secrets_agree() -> None:
    assert Signer(NEW.encode()).unsign(Signer(NEW).sign("alice")) == "alice"
    assert Signer([NEW.encode(), OLD]).unsign(Signer(OLD).sign("bob")) == "bob"


# -- salts --------------------------------------------------------------------


def test_salts_separate_purposes() -> None:
    session = Signer(NEW, salt="doorman.session")
    next_url = Signer(NEW, salt="doorman.next")
    signed = session.sign("/admin")
    assert session.unsign(signed) == "/admin"
    with pytest.raises(BadSignature):
        next_url.unsign(signed)
    with pytest.raises(BadSignature):
        session.unsign(next_url.sign("/admin"))


def test_default_salts_differ_between_layers() -> None:
    with pytest.raises(BadSignature):
        TimestampSigner(NEW).unsign(Signer(NEW).sign("alice.1700000000"))
    with pytest.raises(BadSignature):
        JSONSigner(NEW).loads(TimestampSigner(NEW).sign(b64encode(b'"alice"')))


# -- timestamps ---------------------------------------------------------------


def test_max_age() -> None:
    signer = TimestampSigner(NEW)
    signed = signer.sign("alice", now=1_000_000)
    assert signer.unsign_timestamp(signed, now=5_000_000) == ("alice", 1_000_000)
    assert signer.unsign_timestamp(signed, max_age=10, now=1_000_010) == ("alice", 1_000_000)
    with pytest.raises(SignatureExpired) as caught:
        signer.unsign_timestamp(signed, max_age=10, now=1_000_011)
    assert caught.value.signed_at == 1_000_000
    assert isinstance(caught.value, BadSignature)  # one `except BadSignature` catches both


def test_max_age_against_the_clock() -> None:
    signer = TimestampSigner(NEW)
    old = signer.sign("alice", now=time.time() - 100)
    assert signer.unsign(old) == "alice"
    assert signer.unsign(old, max_age=200) == "alice"
    with pytest.raises(SignatureExpired):
        signer.unsign(old, max_age=50)


def test_json_max_age() -> None:
    stamped = TimestampSigner(NEW, salt="doorman.json")
    old = stamped.sign(b64encode(json.dumps({"a": 1}).encode()), now=time.time() - 100)
    assert JSONSigner(NEW).loads(old, max_age=200) == {"a": 1}
    with pytest.raises(SignatureExpired):
        JSONSigner(NEW).loads(old, max_age=50)


def test_a_tampered_timestamp_is_refused() -> None:
    signer = TimestampSigner(NEW)
    signed = signer.sign("alice", now=1_000_000)
    with pytest.raises(BadSignature):
        signer.unsign(signed.replace("1000000", "9000000"))


# -- configuration ------------------------------------------------------------


@pytest.mark.parametrize("cls", [Signer, TimestampSigner, JSONSigner])
@pytest.mark.parametrize("secret", ["", "short", "x" * (MIN_SECRET_LENGTH - 1), b"x" * 31])
def test_short_secret_is_a_config_error(cls: type, secret: str | bytes) -> None:
    with pytest.raises(ConfigError) as caught:
        cls(secret)
    message = str(caught.value)
    assert f"{len(secret)} characters" in message
    assert str(MIN_SECRET_LENGTH) in message
    assert "secrets.token_urlsafe" in message  # says how to make a good one


def test_a_short_secret_in_a_list_is_named_by_position() -> None:
    with pytest.raises(ConfigError, match="secret #2"):
        Signer([NEW, "weak"])


@pytest.mark.parametrize("cls", [Signer, TimestampSigner, JSONSigner])
def test_no_secret_is_a_config_error(cls: type) -> None:
    with pytest.raises(ConfigError, match="no secret"):
        cls([])


def test_a_secret_of_exactly_the_minimum_length_is_fine() -> None:
    signer = Signer("x" * MIN_SECRET_LENGTH)
    assert signer.unsign(signer.sign("ok")) == "ok"


# -- properties ---------------------------------------------------------------

SIGNER = Signer(NEW)
TIMESTAMP_SIGNER = TimestampSigner(NEW)
JSON_SIGNER = JSONSigner(NEW)


@given(st.text())
def test_property_round_trip(value: str) -> None:
    assert SIGNER.unsign(SIGNER.sign(value)) == value
    assert TIMESTAMP_SIGNER.unsign(TIMESTAMP_SIGNER.sign(value)) == value


@given(json_values)
def test_property_json_round_trip(obj: object) -> None:
    assert JSON_SIGNER.loads(JSON_SIGNER.dumps(obj)) == obj


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, str]:
    """A signed string and a different string made from it by one edit."""
    value = draw(st.text(max_size=40))
    signed = SIGNER.sign(value)
    index = draw(st.integers(0, len(signed)))
    kind = draw(st.sampled_from(["replace", "delete", "insert", "swap"]))
    char = draw(st.characters(codec="utf-8"))
    if kind == "replace" and index < len(signed):
        mutated = signed[:index] + char + signed[index + 1 :]
    elif kind == "delete" and index < len(signed):
        mutated = signed[:index] + signed[index + 1 :]
    elif kind == "swap" and index + 1 < len(signed):
        mutated = signed[:index] + signed[index + 1] + signed[index] + signed[index + 2 :]
    else:
        mutated = signed[:index] + char + signed[index:]
    return signed, mutated


@given(mutations())
def test_property_any_mutation_is_refused(case: tuple[str, str]) -> None:
    signed, mutated = case
    assume(mutated != signed)  # replacing a char by itself, swapping equal chars
    with pytest.raises(BadSignature):
        SIGNER.unsign(mutated)


@given(st.text())
def test_property_unsign_never_crashes(garbage: str) -> None:
    for signer in (SIGNER, TIMESTAMP_SIGNER):
        with contextlib.suppress(BadSignature):
            signer.unsign(garbage)
    with contextlib.suppress(BadSignature):
        JSON_SIGNER.loads(garbage)


@given(st.text(max_size=300), st.binary(min_size=32, max_size=200), st.text(max_size=20))
def test_mac_is_exactly_rfc2104_hmac_sha256(value: str, secret: bytes, salt: str) -> None:
    # The signer keeps HMAC's padded hash states for speed; it must still be HMAC-SHA256.
    import base64
    import hmac

    key = hmac.digest(secret, b"doorman.signing\x00" + salt.encode(), "sha256")
    mac = base64.urlsafe_b64encode(hmac.digest(key, value.encode(), "sha256")).rstrip(b"=")
    assert Signer(secret, salt=salt).sign(value) == f"{value}.{mac.decode()}"
    # Truncated (RFC 2104, section 5), under a key derived with the length in its label.
    key = hmac.digest(secret, b"doorman.signing.16\x00" + salt.encode(), "sha256")
    mac = base64.urlsafe_b64encode(hmac.digest(key, value.encode(), "sha256")[:16]).rstrip(b"=")
    assert Signer(secret, salt=salt, digest_size=16).sign(value) == f"{value}.{mac.decode()}"
