"""``smtp_url`` and ``email_from``: what each URL means, what is refused, and no password shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from doorman.exceptions import ConfigError
from doorman.mail import SMTPServer, check_address, check_sender, parse_smtp_url
from doorman.settings import Settings, load_settings

PASSWORD = "hunter2-smtp"

GOOD = {
    "smtp://127.0.0.1:1025": SMTPServer("127.0.0.1", 1025, "starttls-if-offered"),
    "smtp://mail.example.com": SMTPServer("mail.example.com", 25, "starttls-if-offered"),
    "smtp://user:pass@smtp.example.com:587": SMTPServer(
        "smtp.example.com", 587, "starttls", "user", "pass"
    ),
    "smtp://smtp.example.com:587/": SMTPServer("smtp.example.com", 587, "starttls"),
    # A login to a server elsewhere is never sent in the clear, whatever the port.
    "smtp://user:pass@smtp.example.com:2525": SMTPServer(
        "smtp.example.com", 2525, "starttls", "user", "pass"
    ),
    # ...to a relay on this machine it may be.
    "smtp://user:pass@localhost:1025": SMTPServer(
        "localhost", 1025, "starttls-if-offered", "user", "pass"
    ),
    "smtp://user:pass@[::1]:1025": SMTPServer("::1", 1025, "starttls-if-offered", "user", "pass"),
    "smtps://smtp.example.com": SMTPServer("smtp.example.com", 465, "tls"),
    "SMTPS://u%40example.com:p%40ss%3Aw%2Frd%20%C3%BC@SMTP.example.com:465": SMTPServer(
        "smtp.example.com", 465, "tls", "u@example.com", "p@ss:w/rd ü"
    ),
}


@pytest.mark.parametrize(("url", "server"), GOOD.items(), ids=list(GOOD))
def test_what_each_url_means(url: str, server: SMTPServer) -> None:
    assert parse_smtp_url(url) == server


BAD = {
    "": "give a URL such as",
    "mail.example.com:587": "give an smtp:// URL",
    "http://mail.example.com": "give an smtp:// URL",
    "smtp://": "give the mail server's host",
    "smtp://mail.example.com:99999": "the port is not a number",
    "smtp://mail.example.com:0": "the port is not a number",
    "smtp://mail.example.com:465": "write smtps:// for it",
    "smtp://mail.example.com/inbox": "give no path",
    "smtp://mail.example.com?tls=1": "give no path",
    f"smtp://user:{PASSWORD}#x@mail.example.com": "give no path",
    f"smtp://:{PASSWORD}@mail.example.com": "give both the user name and the password",
    "smtp://user@mail.example.com": "give both the user name and the password",
    f"smtp://user:{PASSWORD} x@mail.example.com": "a space or a control character",
    "smtp://mail.example.com\r\n:25": "a space or a control character",
}


@pytest.mark.parametrize(("url", "words"), BAD.items(), ids=list(BAD))
def test_a_bad_url_is_refused_without_repeating_it(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as caught:
        parse_smtp_url(url)
    assert PASSWORD not in str(caught.value)
    with pytest.raises(ConfigError) as caught_setting:
        load_settings(environ={}, overrides={"smtp_url": url or 7})  # "" is "not set"
    message = str(caught_setting.value)
    assert message.startswith("smtp_url = <hidden> (from --smtp-url):"), message
    assert PASSWORD not in message


def test_the_password_stays_out_of_reprs() -> None:
    url = f"smtp://user:{PASSWORD}@smtp.example.com:587"
    settings = Settings.from_mapping({"smtp_url": url, "email_from": "noreply@example.com"})
    assert settings.smtp_url == url
    assert PASSWORD not in repr(settings) and PASSWORD not in repr(parse_smtp_url(url))
    assert str(parse_smtp_url(url)) == "smtp.example.com:587"
    assert Settings.from_json(settings.to_json()) == settings  # as serve hands it to workers


def test_the_environment_sets_both() -> None:
    settings = load_settings(
        environ={
            "DOORMAN_SMTP_URL": "smtp://127.0.0.1:1025",
            "DOORMAN_EMAIL_FROM": "Doorman <noreply@example.com>",
        }
    )
    assert (settings.smtp_url, settings.email_from) == (
        "smtp://127.0.0.1:1025",
        "Doorman <noreply@example.com>",
    )
    assert load_settings(environ={}).smtp_url is None


def test_the_password_from_a_file_of_its_own(tmp_path: Path) -> None:
    """A table: the URL with the user, and the password from $file (or $env), any characters."""
    (tmp_path / "smtp-password").write_text("p@ss:w/rd #1\n")
    (tmp_path / "doorman.toml").write_text(
        'smtp_url = {url = "smtp://mailer@smtp.example.com:587", '
        'password = {"$file" = "smtp-password"}}\n'
        'email_from = "noreply@example.com"\n'
    )
    settings = load_settings(config_file=tmp_path / "doorman.toml", environ={})
    assert settings.smtp_url is not None
    server = parse_smtp_url(settings.smtp_url)
    assert (server.username, server.password, server.security) == (
        "mailer",
        "p@ss:w/rd #1",
        "starttls",
    )


def test_the_table_from_the_environment_as_json() -> None:
    table = {"url": "smtps://mailer@smtp.example.com", "password": PASSWORD}
    settings = load_settings(environ={"DOORMAN_SMTP_URL": json.dumps(table)})
    assert settings.smtp_url is not None
    assert parse_smtp_url(settings.smtp_url).password == PASSWORD


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"url": "smtp://mailer@h:587"}, "give a URL, or a table"),
        ({"url": "smtp://h:587", "password": PASSWORD}, "give the user name in the url"),
        ({"url": f"smtp://m:{PASSWORD}@h:587", "password": "x"}, "a password already"),
        ({"url": "smtp://m@h:587", "password": ""}, "give url and password as text"),
        ({"url": "smtp://m@h:587", "password": PASSWORD, "port": 1}, "give a URL, or a table"),
    ],
)
def test_a_bad_table_is_refused(table: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        Settings.from_mapping({"smtp_url": table})
    assert PASSWORD not in str(caught.value)


# -- addresses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("noreply@example.com", "noreply@example.com"),
        (" noreply@example.com ", "noreply@example.com"),
        ("Doorman <noreply@example.com>", "Doorman <noreply@example.com>"),
        ('"Example, Inc." <noreply@example.com>', '"Example, Inc." <noreply@example.com>'),
        ("<noreply@example.com>", "noreply@example.com"),
        ("root@localhost", "root@localhost"),
    ],
)
def test_a_sender_with_or_without_a_name(given: str, kept: str) -> None:
    assert check_sender(given) == kept
    assert Settings.from_mapping({"email_from": given}).email_from == kept


ONE_ADDRESS = [
    "alice",
    "alice@",
    "@example.com",
    "alice@example.com, bob@example.com",
    "alice@example.com\r\nBcc: eve@example.com",
    "alice smith@example.com",
    "alice@example.com>",
    "a@b@example.com",
    "x" * 250 + "@example.com",
    "al\x7fice@example.com",  # DEL: aiosmtplib refuses it as the message goes
    "al\u202eice@example.com",  # a bidi override
]


@pytest.mark.parametrize("text", ONE_ADDRESS)
def test_an_address_is_one_mailbox_and_nothing_more(text: str) -> None:
    with pytest.raises(ValueError, match="give one email address"):
        check_address(text)
    with pytest.raises(ValueError):
        check_sender(text)


def test_a_sender_cannot_smuggle_a_header() -> None:
    with pytest.raises(ConfigError, match=r"email_from = .* on one line"):
        Settings.from_mapping({"email_from": "Doorman\r\nBcc: eve@example.com <a@example.com>"})
    with pytest.raises(ValueError):
        check_sender('Do"or <a@example.com>')
