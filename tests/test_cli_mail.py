"""``doorman mail test`` against a real SMTP server on 127.0.0.1, and its one-line errors.

(A server that hangs: tests/test_mail.py, with a timeout short enough for a test.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import free_port
from .mail_server import Certificates, MailServer
from .mail_server import relay as relay

# test_cli's fixtures, its autouse clean environment among them:
from .test_cli import Invoke, fails, ok
from .test_cli import clean_environment as clean_environment
from .test_cli import db as db
from .test_cli import doorman_cli as doorman_cli

FROM = "Doorman <noreply@example.com>"


def test_sends_a_test_message_and_prints_the_reply(doorman_cli: Invoke, relay: MailServer) -> None:
    env = {"DOORMAN_SMTP_URL": relay.url, "DOORMAN_EMAIL_FROM": FROM}
    result = ok(doorman_cli("mail", "test", "alice@example.com", env=env))
    assert result.stdout == (
        f"sent to alice@example.com through 127.0.0.1:{relay.port} (no TLS); "
        "the server said: 250 2.0.0 Ok: queued as Q1\n"
    )
    assert result.stderr == ""
    [delivered] = relay.messages
    assert delivered.recipients == ["alice@example.com"] and delivered.message["From"] == FROM
    assert f"127.0.0.1:{relay.port}" in delivered.body("plain")


def test_the_settings_file_and_its_flags(
    doorman_cli: Invoke, relay: MailServer, tmp_path: Path
) -> None:
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "test_subject.txt").write_text("Checking the mail of {{ site_name }}")
    (tmp_path / "doorman.toml").write_text(
        f'smtp_url = "{relay.url}"\nemail_from = "nobody@example.com"\nsite_name = "Example Co"\n'
    )
    ok(doorman_cli("mail", "test", "bob@example.com", "--email-from", FROM, "--template-dir", "."))
    [delivered] = relay.messages
    assert delivered.message["Subject"] == "Checking the mail of Example Co"
    assert delivered.message["From"] == FROM


def test_reports_starttls(
    doorman_cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Certificates are checked against the system's store, which SSL_CERT_FILE replaces."""
    certificates = Certificates()
    certificates.ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    with MailServer(starttls=certificates.server_context()) as server:
        env = {"DOORMAN_SMTP_URL": server.url, "DOORMAN_EMAIL_FROM": FROM}
        result = ok(doorman_cli("mail", "test", "alice@example.com", env=env))
    assert "(STARTTLS); the server said: 250 " in result.stdout
    assert server.messages[0].over_tls


def test_a_server_that_is_down_is_one_line(doorman_cli: Invoke) -> None:
    port = free_port()
    env = {"DOORMAN_SMTP_URL": f"smtp://u:hunter2@127.0.0.1:{port}", "DOORMAN_EMAIL_FROM": FROM}
    line = fails(doorman_cli("mail", "test", "alice@example.com", env=env))
    assert line == f"Error: mail not sent: 127.0.0.1:{port} refused the connection " + (
        "(is the mail server running, on that port?)"
    )


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({}, "smtp_url is not set, so doorman sends no mail"),
        ({"DOORMAN_SMTP_URL": "smtp://127.0.0.1:1025"}, "smtp_url is set but email_from is not"),
        (
            {"DOORMAN_SMTP_URL": "smtp://u:hunter2@127.0.0.1:465", "DOORMAN_EMAIL_FROM": FROM},
            "smtp_url = <hidden> (from DOORMAN_SMTP_URL): port 465",
        ),
        (
            {"DOORMAN_SMTP_URL": "smtp://127.0.0.1:1025", "DOORMAN_EMAIL_FROM": "nobody"},
            "email_from = 'nobody' (from DOORMAN_EMAIL_FROM): give one email address",
        ),
    ],
)
def test_settings_that_cannot_send_are_one_line(
    doorman_cli: Invoke, env: dict[str, str], words: str
) -> None:
    line = fails(doorman_cli("mail", "test", "alice@example.com", env=env), words)
    assert "hunter2" not in line


@pytest.mark.parametrize("address", ["alice", "alice@example.com, eve@example.com", "a b@c"])
def test_a_bad_address_is_one_line(doorman_cli: Invoke, relay: MailServer, address: str) -> None:
    env = {"DOORMAN_SMTP_URL": relay.url, "DOORMAN_EMAIL_FROM": FROM}
    fails(doorman_cli("mail", "test", address, env=env), "give one email address")
    assert not relay.messages
