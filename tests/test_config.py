"""Settings: the table, precedence, $env/$file, one-line errors, the secret kept in the database."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from doorman.config import (
    SETTINGS,
    Settings,
    close_doorman,
    load_settings,
    open_doorman,
    parse_duration,
    resolve_secrets,
)
from doorman.db import connect, create_engine
from doorman.db.schema import settings_table
from doorman.exceptions import ConfigError
from doorman.stores.sql import SQLStore

from .conftest import SECRET

ROOT = Path(__file__).parent.parent
OTHER_SECRET = "an-older-secret-that-still-verifies-" + "o" * 8


@pytest.fixture(autouse=True)
def clean_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A working directory without doorman.toml, and no DOORMAN_* variables from outside."""
    monkeypatch.chdir(tmp_path)
    for setting in SETTINGS:
        monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.delenv("DOORMAN_CONFIG", raising=False)
    yield


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def one_line_error(excinfo: pytest.ExceptionInfo[ConfigError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message, message
    return message


# -- the table -------------------------------------------------------------------


def test_the_table_and_the_dataclass_agree() -> None:
    assert [f.name for f in dataclasses.fields(Settings)] == [s.name for s in SETTINGS]
    assert all(s.help.endswith(".") for s in SETTINGS)


def test_defaults_come_from_the_table() -> None:
    settings = load_settings(environ={})
    for setting in SETTINGS:
        value = getattr(settings, setting.name)
        expected = tuple(setting.default) if isinstance(setting.default, list) else setting.default
        assert value == expected, setting.name
    assert settings.db == "doorman.db" and settings.port == 8000 and settings.secret is None


def test_every_setting_has_a_row_in_the_docs() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = [s.name for s in SETTINGS if f"| `{s.name}` |" not in text]
    assert not missing, f"settings without a row in docs/configuration.md: {missing}"
    assert all(f"`{s.env}`" in text for s in SETTINGS)


# -- precedence ----------------------------------------------------------------------


def test_defaults_then_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = write(
        tmp_path / "conf.toml",
        'db = "from-file.db"\nport = 9000\nsite_name = "file"\nworkers = 3\n',
    )
    environ = {"DOORMAN_PORT": "9100", "DOORMAN_SITE_NAME": "env"}
    overrides = {"site_name": "flag", "workers": None}
    settings = load_settings(config_file=config, environ=environ, overrides=overrides)
    assert settings.host == "127.0.0.1"  # default
    assert settings.db == "from-file.db"  # file
    assert settings.port == 9100  # environment over file
    assert settings.site_name == "flag"  # flag over environment
    assert settings.workers == 3  # a None flag is "not given"


def test_doorman_toml_in_the_working_directory_is_read_when_present(tmp_path: Path) -> None:
    assert load_settings(environ={}).site_name == "doorman"  # absent: fine
    write(tmp_path / "doorman.toml", 'site_name = "Acme"\n')
    assert load_settings(environ={}).site_name == "Acme"


def test_doorman_config_names_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "elsewhere.toml", "port = 8111\n")
    assert load_settings(environ={"DOORMAN_CONFIG": str(config)}).port == 8111


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_a_named_config_file_must_exist(tmp_path: Path, how: str) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as excinfo:
        if how == "argument":
            load_settings(config_file=missing, environ={})
        else:
            load_settings(environ={"DOORMAN_CONFIG": missing})
    assert "nope.toml" in one_line_error(excinfo) and "does not exist" in str(excinfo.value)


def test_bad_toml_is_one_line(tmp_path: Path) -> None:
    config = write(tmp_path / "doorman.toml", "port = = 8000\n")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(config_file=config, environ={})
    assert "not valid TOML" in one_line_error(excinfo)


def test_an_unknown_key_names_the_closest_setting(tmp_path: Path) -> None:
    config = write(tmp_path / "doorman.toml", 'secert = "x"\n')
    with pytest.raises(ConfigError) as excinfo:
        load_settings(config_file=config, environ={})
    message = one_line_error(excinfo)
    assert "'secert'" in message and "did you mean 'secret'?" in message


def test_an_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="did you mean 'port'"):
        load_settings(environ={}, overrides={"prot": 1})


def test_environment_values_are_parsed() -> None:
    environ = {
        "DOORMAN_ALLOW_REGISTRATION": "yes",
        "DOORMAN_BASIC_AUTH": "0",
        "DOORMAN_COOKIE_SECURE": "TRUE",
        "DOORMAN_SECRET": f"{SECRET}, {OTHER_SECRET}",
        "DOORMAN_CORS_ORIGINS": "https://a.example.com, https://b.example.com/",
        "DOORMAN_PERMISSIONS": '{"view": {"allow": {"id": "*"}}}',
        "DOORMAN_SESSION_MAX_AGE": "7d",
        "DOORMAN_IDLE_TIMEOUT": "",  # empty: not set
        "DOORMAN_SENTRY": "https://key@sentry.example.com/1",
        "DOORMAN_PUBLIC_URL": "https://auth.example.com/",
    }
    settings = load_settings(environ=environ)
    assert settings.allow_registration is True
    assert settings.basic_auth is False
    assert settings.cookie_secure is True
    assert settings.secret == (SECRET, OTHER_SECRET)  # newest first
    assert settings.cors_origins == ("https://a.example.com", "https://b.example.com")
    assert settings.permissions == {"view": {"allow": {"id": "*"}}}
    assert settings.session_max_age == 7 * 86400
    assert settings.idle_timeout is None
    assert settings.sentry == {"dsn": "https://key@sentry.example.com/1"}
    assert settings.public_url == "https://auth.example.com"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600),
        ("3600s", 3600),
        ("30m", 1800),
        ("12h", 43200),
        ("90d", 7776000),
        ("2w", 1209600),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0d", "-5", "1.5h", "ten minutes", "5y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# -- $env and $file ---------------------------------------------------------------------


def test_env_and_file_references(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    write(tmp_path / "secrets" / "key", SECRET + "\n")
    config = write(
        tmp_path / "doorman.toml",
        'secret = {"$file" = "secrets/key"}\n'  # relative to the config file
        'db = {"$env" = "DATABASE_URL"}\n'
        'port = {"$env" = "PORT"}\n'
        'sentry = {dsn = {"$env" = "SENTRY_DSN"}, environment = "prod"}\n',
    )
    environ = {
        "DATABASE_URL": "postgresql://app@db.example.com/auth",
        "PORT": "8443",
        "SENTRY_DSN": "https://k@sentry.example.com/2",
    }
    settings = load_settings(config_file=config, environ=environ)
    assert settings.secret == (SECRET,)  # the trailing newline is gone
    assert settings.db == "postgresql://app@db.example.com/auth"
    assert settings.port == 8443
    assert settings.sentry == {"dsn": "https://k@sentry.example.com/2", "environment": "prod"}


def test_a_missing_env_reference_names_the_variable(tmp_path: Path) -> None:
    config = write(tmp_path / "doorman.toml", 'secret = {"$env" = "AUTH_SECRET"}\n')
    with pytest.raises(ConfigError) as excinfo:
        load_settings(config_file=config, environ={})
    message = one_line_error(excinfo)
    assert "secret" in message and "AUTH_SECRET" in message and "not set" in message


def test_a_missing_file_reference_names_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "doorman.toml", 'secret = {"$file" = "/run/secrets/none"}\n')
    with pytest.raises(ConfigError) as excinfo:
        load_settings(config_file=config, environ={})
    message = one_line_error(excinfo)
    assert "secret" in message and "/run/secrets/none" in message and "cannot read" in message


# -- bad values ---------------------------------------------------------------------------

BAD = {
    "db": ["", "mysql://x/y", ":memory:", "sqlite://"],  # in memory: one process sees it
    "sessions": ["memcached", "", "redis://cache:port/0", "redis://cache/zero", "unix://"],
    "secret": ["too-short", ["x" * 40, "short"], 42],
    "host": ["", 7],
    "port": [0, 65536, "abc", True, 80.5],
    "workers": [0, "abc", "-1"],
    "db_pool_size": [0, 1001, "many", 2.5],
    "route_prefix": ["-/", "/-", "/a b/", "/"],
    "site_name": ["", "x" * 101],
    "public_url": [
        "auth.example.com",
        "ftp://auth.example.com",
        "https://a.example.com/?x=1",
        "https://auth.example.com:99999",
    ],
    "cookie_domain": ["https://example.com", "example.com:8000", "exa mple.com"],
    "cookie_secure": ["maybe", 2],
    "session_max_age": [0, "forever", 59],
    "idle_timeout": [-1, "soon"],
    "absolute_timeout": [0, "1.5h"],
    "allow_registration": ["perhaps"],
    "login_redirect": ["//evil.example/", "javascript:alert(1)", "/a#b", 7],
    "max_body_size": [0, "12", "64 parsecs", "2000MB", -1, True, 1.5],
    "basic_auth": [[]],
    "access_log": ["sometimes", 2],
    "throttle_per_account": [-1, "many"],
    "throttle_per_address": [-1, 1.5],
    "throttle_registrations": [-3, "lots"],
    "throttle_window": [0, "never"],
    "events_retention": [0, "59m", "banana"],
    "password_reset_max_age": [0, 59, "banana"],
    "require_verified_email": ["maybe", 2],
    "registration": ["invited", True, "OPEN"],
    "email_sign_in": ["sometimes"],
    "require_two_factor": ["admin", True, "ALL", ""],
    "step_up_after": [0, 29, "soon"],
    "webauthn_rp_id": ["https://example.com", "example.com:8000", "10.0.0.1", "a..b", 7],
    "password_min_length": [4, 5000, "long"],
    "template_dir": ["/no/such/directory"],
    "plugins_dir": ["/no/such/directory"],
    "permissions": ["not json", [1], {"view": {"alow": True}}, {"view": "everyone"}],
    "forwarded_allow_ips": ["proxy.example.com", "10.0.0.0/33"],
    "cors_origins": [
        "app.example.com",
        ["https://a.example.com/path"],
        5,
        "*",
        ["https://a.example.com", "*"],
        "https://a.example.com:99999",
    ],
    "allowed_origins": [
        "app.example.com",
        ["https://a.example.com/path"],
        5,
        "*",
        "https://*",
        "https://*example.com",
        "https://app.*.example.com",
        "null",
        "https://a.example.com:99999",
        "https://user@a.example.com",
        "https://a.example.com.",
    ],
    "public_paths": ["static/", ["/a b"], "/x/../y", [7]],
    "sentry": [
        "not json",
        {"environment": "prod"},
        "https://sentry.example.com/1",  # no key
        {"dsn": "https://k@sentry.example.com/1", "sample_rat": 0.5},
        {"dsn": "https://k@sentry.example.com/1", "send_default_pii": True},
    ],
    "smtp_url": ["mail.example.com", "smtp://mail.example.com:465", {"url": "smtp://h"}, 7],
    "email_from": ["noreply", "a@example.com, b@example.com", 7],
}


def test_every_setting_has_bad_values_to_try() -> None:
    assert set(BAD) == {s.name for s in SETTINGS}


@pytest.mark.parametrize(
    ("name", "value"), [(name, value) for name, values in BAD.items() for value in values]
)
def test_a_bad_value_is_one_line_naming_the_setting(name: str, value: Any) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(environ={}, overrides={name: value})
    message = one_line_error(excinfo)
    assert message.startswith(f"{name} = "), message
    assert f"(from --{name.replace('_', '-')}):" in message


@pytest.mark.parametrize("source", ["file", "environment"])
def test_a_bad_value_names_where_it_came_from(tmp_path: Path, source: str) -> None:
    if source == "file":
        config = write(tmp_path / "doorman.toml", "port = 0\n")
        call: dict[str, Any] = {"config_file": config, "environ": {}}
        origin = str(config)
    else:
        call, origin = {"environ": {"DOORMAN_PORT": "0"}}, "DOORMAN_PORT"
    with pytest.raises(ConfigError) as excinfo:
        load_settings(**call)
    assert one_line_error(excinfo) == (
        f"port = 0 (from {origin}): give a whole number from 1 to 65535, such as 8000"
        if source == "file"
        else f"port = '0' (from {origin}): give a whole number from 1 to 65535, such as 8000"
    )


def test_secrets_never_appear_in_messages_or_repr() -> None:
    short = "hunter2-is-my-secret"
    with pytest.raises(ConfigError) as excinfo:
        load_settings(environ={"DOORMAN_SECRET": f"{SECRET},{short}"})
    message = one_line_error(excinfo)
    assert "secret = <hidden> (from DOORMAN_SECRET)" in message and "#2" in message
    assert short not in message and SECRET not in message
    with pytest.raises(ConfigError) as excinfo:
        load_settings(environ={"DOORMAN_SENTRY": '{"environment": "hunter2"}'})
    assert "hunter2" not in str(excinfo.value) and "<hidden>" in str(excinfo.value)
    settings = load_settings(environ={"DOORMAN_SECRET": SECRET})
    assert SECRET not in repr(settings)


def test_a_password_in_a_database_url_is_not_shown() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(environ={"DOORMAN_SESSIONS": "memcached://user:hunter2@cache/0"})
    assert "hunter2" not in one_line_error(excinfo) and "user:***@cache" in str(excinfo.value)


# -- handing settings to worker processes -------------------------------------------------


def test_json_round_trip(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "DOORMAN_SECRET": f"{SECRET},{OTHER_SECRET}",
            "DOORMAN_PERMISSIONS": '{"edit": {"allow": {"groups": ["staff"]}}}',
            "DOORMAN_CORS_ORIGINS": "https://app.example.com",
            "DOORMAN_IDLE_TIMEOUT": "30m",
            "DOORMAN_PLUGINS_DIR": str(tmp_path),
            "DOORMAN_SENTRY": '{"dsn": "https://k@s.example.com/1", "traces_sample_rate": 0.1}',
        }
    )
    text = settings.to_json()
    assert json.loads(text)["secret"] == [SECRET, OTHER_SECRET]
    assert Settings.from_json(text) == settings


@pytest.mark.parametrize("text", ["{", "[]", '{"prot": 1}', '{"port": "x"}'])
def test_from_json_refuses_garbage_in_one_line(text: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        Settings.from_json(text)
    one_line_error(excinfo)


# -- the secret ----------------------------------------------------------------------------


async def _stored_secrets(engine: Any) -> list[str]:
    async with connect(engine) as connection:
        query = sa.select(settings_table.c.value).where(settings_table.c.name == "secret")
        return list((await connection.execute(query)).scalars())


@pytest.mark.anyio
async def test_a_configured_secret_is_used_and_not_stored(tmp_path: Path) -> None:
    settings = Settings.from_mapping({"db": str(tmp_path / "a.db"), "secret": [SECRET]})
    engine = create_engine(settings.db)
    try:
        assert await resolve_secrets(settings, engine) == [SECRET]
        assert await _stored_secrets(engine) == []
    finally:
        await engine.dispose()


@pytest.mark.anyio
async def test_a_short_configured_secret_is_refused(tmp_path: Path) -> None:
    settings = dataclasses.replace(
        Settings.from_mapping({"db": str(tmp_path / "a.db")}), secret=("short",)
    )
    engine = create_engine(settings.db)
    try:
        with pytest.raises(ConfigError) as excinfo:
            await resolve_secrets(settings, engine)
        message = one_line_error(excinfo)
        assert "<hidden>" in message and "short" not in message
    finally:
        await engine.dispose()


@pytest.mark.anyio
async def test_a_secret_is_made_once_and_kept(tmp_path: Path) -> None:
    settings = Settings.from_mapping({"db": str(tmp_path / "a.db")})
    found = []
    for _ in range(2):  # two starts, each with its own engine
        engine = create_engine(settings.db)
        try:
            found.append(await resolve_secrets(settings, engine))
        finally:
            await engine.dispose()
    assert found[0] == found[1] and len(found[0]) == 1 and len(found[0][0]) >= 32


async def _concurrent_first_starts(db: str, workers: int = 4) -> list[list[str]]:
    settings = Settings.from_mapping({"db": db})
    engines = [create_engine(db) for _ in range(workers)]
    try:
        return list(await asyncio.gather(*(resolve_secrets(settings, e) for e in engines)))
    finally:
        for engine in engines:
            await engine.dispose()


@pytest.mark.anyio
async def test_concurrent_first_starts_share_one_secret_on_sqlite(tmp_path: Path) -> None:
    found = await _concurrent_first_starts(str(tmp_path / "fresh.db"))
    assert all(secrets == found[0] for secrets in found)
    engine = create_engine(str(tmp_path / "fresh.db"))
    try:
        assert await _stored_secrets(engine) == found[0]
    finally:
        await engine.dispose()


@pytest.mark.anyio
@pytest.mark.postgres
async def test_concurrent_first_starts_share_one_secret_on_postgres(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        await resolve_secrets(
            Settings.from_mapping({"db": postgres_url, "secret": [SECRET]}), engine
        )
        async with connect(engine, write=True) as connection:  # as on a first start
            await connection.execute(
                settings_table.delete().where(settings_table.c.name == "secret")
            )
        found = await _concurrent_first_starts(postgres_url)
        assert all(secrets == found[0] for secrets in found)
        assert await _stored_secrets(engine) == found[0]
    finally:
        await engine.dispose()


# -- the Doorman object ------------------------------------------------------------------


@pytest.mark.anyio
async def test_open_doorman_shares_one_engine(tmp_path: Path) -> None:
    settings = Settings.from_mapping(
        {"db": str(tmp_path / "a.db"), "password_min_length": 12, "throttle_per_account": 3}
    )
    doorman, store, secrets = await open_doorman(settings)
    try:
        assert isinstance(store, SQLStore) and store.engine is doorman.engine
        assert doorman.password_min_length == 12
        assert doorman.throttle.per_account == 3
        assert len(secrets) == 1
        user = await doorman.create_user("alice", "a long enough passphrase")
        assert doorman.session_auth_hash_matches(user, doorman.session_auth_hash(user))
    finally:
        await close_doorman(doorman, store)


@pytest.mark.anyio
async def test_open_doorman_with_cookie_sessions_counts_in_the_database(tmp_path: Path) -> None:
    from doorman.stores import CookieStore, SQLCounter

    settings = Settings.from_mapping({"db": str(tmp_path / "a.db"), "sessions": "cookie"})
    doorman, store, _ = await open_doorman(settings)
    try:
        assert isinstance(store, CookieStore)
        assert isinstance(doorman.throttle.counter, SQLCounter)
    finally:
        await close_doorman(doorman, store)


@pytest.mark.anyio
async def test_open_doorman_fails_closed_on_a_broken_plugin(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    write(tmp_path / "plugins" / "broken.py", "raise RuntimeError('boom')\n")
    settings = Settings.from_mapping(
        {"db": str(tmp_path / "a.db"), "plugins_dir": str(tmp_path / "plugins")}
    )
    with pytest.raises(ConfigError, match=r"broken\.py"):
        await open_doorman(settings)


def test_the_example_doorman_toml_loads(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    example = text.split("## An example `doorman.toml`")[1].split("```toml\n")[1].split("```")[0]
    write(tmp_path / "secret", SECRET + "\n")
    config = write(
        tmp_path / "doorman.toml",
        example.replace("/run/secrets/doorman-secret", str(tmp_path / "secret")),
    )
    environ = {
        "DATABASE_URL": "postgresql://doorman@db.example.com/doorman",
        "SMTP_PASSWORD": "smtp password",
    }
    settings = load_settings(config_file=config, environ=environ)
    assert settings.secret == (SECRET,) and settings.workers == 4
    assert settings.smtp_url == "smtp://doorman:smtp%20password@smtp.acme.example:587"
    assert settings.idle_timeout == 7200 and settings.cookie_domain == "acme.example"
    assert settings.permissions == {"view-reports": {"allow": {"groups": ["staff"]}}}
