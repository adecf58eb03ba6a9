"""Sending mail to a real SMTP server (aiosmtpd on 127.0.0.1): plain, STARTTLS, TLS, failures."""

from __future__ import annotations

import logging
import urllib.parse
from email.message import EmailMessage

import pytest

from doorman.exceptions import ConfigError, MailNotConfigured, MailNotSent
from doorman.mail import MailTemplates, NullMailer, Outbox, SMTPMailer, SMTPServer
from doorman.mail.mailer import Receipt
from doorman.settings import Settings

from .helpers import free_port
from .mail_server import Certificates, MailServer, silent_port
from .mail_server import certificates as certificates
from .mail_server import relay as relay

pytestmark = pytest.mark.anyio

SENDER = "Doorman <noreply@example.com>"
TO = "alice@example.com"
#: Stand-ins for what must never reach a log line or an error: a reset link, a password.
LINK = "https://auth.example.com/-/password-reset/secret-token-7f3a9c"
PASSWORD = "p@ss:w/rd ü"


def templates() -> MailTemplates:
    return MailTemplates(site_name="Example Co")


def reset_message(to: str = TO) -> EmailMessage:
    """A message with a link in it, as the password reset will send."""
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = "Reset your password"
    message.set_content(f"Follow {LINK} to choose a new password.")
    message.add_alternative(f'<a href="{LINK}">Choose a new password</a>', subtype="html")
    return message


async def test_a_message_reaches_a_local_relay_in_text_and_html(relay: MailServer) -> None:
    mailer = SMTPMailer(relay.url, sender=SENDER)
    message = templates().message("test", to=TO, server=relay.url, sent_at="noon")
    receipt = await mailer.send(message)
    assert receipt == Receipt(TO, f"127.0.0.1:{relay.port}", "no TLS", "250 2.0.0 Ok: queued as Q1")
    [delivered] = relay.messages
    assert (delivered.sender, delivered.recipients) == ("noreply@example.com", [TO])
    got = delivered.message
    assert got.get_content_type() == "multipart/alternative"
    assert got["From"] == SENDER and got["To"] == TO
    assert got["Subject"] == "Test message from Example Co"
    assert got["Date"] and got["Message-ID"].endswith("@example.com>")
    assert "Example Co" in delivered.body("plain") and "noon" in delivered.body("plain")
    assert "<code>doorman mail test</code>" in delivered.body("html")
    assert not delivered.over_tls and delivered.login is None


async def test_starttls_is_used_when_the_server_offers_it(certificates: Certificates) -> None:
    with MailServer(starttls=certificates.server_context()) as server:
        mailer = SMTPMailer(server.url, sender=SENDER, tls_context=certificates.client_context())
        receipt = await mailer.send(templates().message("test", to=TO, server="s", sent_at="t"))
    assert receipt.security == "STARTTLS"
    assert server.messages[0].over_tls


async def test_a_login_goes_over_starttls_percent_decoded(certificates: Certificates) -> None:
    user = "mailer@example.com"
    with MailServer(
        starttls=certificates.server_context(), require_starttls=True, logins={user: PASSWORD}
    ) as server:
        quoted = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(PASSWORD, safe='')}"
        url = f"smtp://{quoted}@127.0.0.1:{server.port}"
        mailer = SMTPMailer(url, sender=SENDER, tls_context=certificates.client_context())
        assert PASSWORD not in repr(mailer) and PASSWORD not in repr(mailer.server)
        receipt = await mailer.send(templates().message("test", to=TO, server="s", sent_at="t"))
    assert receipt.security == "STARTTLS"
    assert server.messages[0].login == user and server.messages[0].over_tls


async def test_a_wrong_password_is_refused_in_words_without_it(certificates: Certificates) -> None:
    with MailServer(starttls=certificates.server_context(), logins={"mailer": "right"}) as server:
        server_spec = SMTPServer("127.0.0.1", server.port, "starttls", "mailer", PASSWORD)
        mailer = SMTPMailer(server_spec, sender=SENDER, tls_context=certificates.client_context())
        with pytest.raises(MailNotSent) as caught:
            await mailer.send(templates().message("test", to=TO, server="s", sent_at="t"))
    assert "refused the user name or password: 535" in str(caught.value)
    assert PASSWORD not in str(caught.value) and not server.messages


async def test_implicit_tls_with_smtps(certificates: Certificates) -> None:
    with MailServer(implicit_tls=certificates.server_context(), logins={"u": PASSWORD}) as server:
        url = f"smtps://u:{urllib.parse.quote(PASSWORD, safe='')}@127.0.0.1:{server.port}"
        mailer = SMTPMailer(url, sender=SENDER, tls_context=certificates.client_context())
        receipt = await mailer.send(templates().message("test", to=TO, server="s", sent_at="t"))
    assert receipt.security == "TLS"
    assert server.messages[0].over_tls and server.messages[0].login == "u"


@pytest.mark.parametrize("option", ["implicit_tls", "starttls"])
async def test_a_certificate_not_trusted_sends_nothing(
    certificates: Certificates, option: str
) -> None:
    """The system's trust store does not know the test CA: no message, a clear reason.

    STARTTLS when offered does not fall back to plain text when the certificate fails.
    """
    with MailServer(**{option: certificates.server_context()}) as server:
        mailer = SMTPMailer(server.url, sender=SENDER)
        with pytest.raises(MailNotSent) as caught:
            await mailer.send(templates().message("test", to=TO, server="s", sent_at="t"))
    assert "failed TLS: its certificate was not accepted" in str(caught.value)
    assert not server.messages


async def test_required_starttls_not_offered_sends_nothing(relay: MailServer) -> None:
    """Port 587 (or a login to a remote server) requires STARTTLS: no downgrade."""
    required = SMTPServer("127.0.0.1", relay.port, "starttls", "mailer", PASSWORD)
    with pytest.raises(MailNotSent) as caught:
        await SMTPMailer(required, sender=SENDER).send(reset_message())
    assert "does not offer STARTTLS" in str(caught.value)
    assert not relay.messages


async def test_a_refused_recipient_is_named_with_the_servers_words() -> None:
    with MailServer(refused={"nobody@example.com"}) as server, pytest.raises(MailNotSent) as caught:
        await SMTPMailer(server.url, sender=SENDER).send(reset_message("nobody@example.com"))
    assert "refused the recipient: 550 5.1.1 no mailbox here by that name" in str(caught.value)


# -- a server that is down or hangs: a clear error, no secret in it or in the logs -----


async def test_a_server_that_is_down(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    url = f"smtp://mailer:{urllib.parse.quote(PASSWORD, safe='')}@127.0.0.1:{port}"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(MailNotSent) as caught:
        await SMTPMailer(url, sender=SENDER).send(reset_message())
    assert str(caught.value) == (
        f"mail not sent: 127.0.0.1:{port} refused the connection "
        "(is the mail server running, on that port?)"
    )
    assert caught.value.status_code == 503 and caught.value.__cause__ is None
    assert_no_secrets(str(caught.value), caplog)
    [warning] = [r for r in caplog.records if r.name == "doorman.mail"]
    assert warning.levelname == "WARNING"
    assert f"mail to {TO} not sent (subject 'Reset your password')" in warning.getMessage()


async def test_a_server_that_hangs_times_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with silent_port() as port:
        mailer = SMTPMailer(f"smtp://127.0.0.1:{port}", sender=SENDER, timeout=0.5)
        with pytest.raises(MailNotSent) as caught:
            await mailer.send(reset_message())
    assert str(caught.value) == f"mail not sent: 127.0.0.1:{port} did not answer within 0.5 seconds"
    assert_no_secrets(str(caught.value), caplog)


async def test_the_message_can_be_sent_again_once_the_server_is_back() -> None:
    """Nothing is lost: the same message goes out when the server answers again."""
    message = reset_message()
    with MailServer() as server:
        url = server.url
    with pytest.raises(MailNotSent):
        await SMTPMailer(url, sender=SENDER).send(message)
    with MailServer() as again:
        receipt = await SMTPMailer(again.url, sender=SENDER).send(message)
    assert receipt.reply.startswith("250 ") and LINK in again.messages[0].body("plain")


def assert_no_secrets(error: str, caplog: pytest.LogCaptureFixture) -> None:
    for secret in (LINK, "secret-token-7f3a9c", PASSWORD, urllib.parse.quote(PASSWORD, safe="")):
        assert secret not in error
        assert secret not in caplog.text


# -- without smtp_url ------------------------------------------------------------------


async def test_without_smtp_url_nothing_is_sent_and_callers_can_tell() -> None:
    outbox = Outbox.from_settings(Settings.from_mapping({}))
    assert isinstance(outbox.mailer, NullMailer) and not outbox.can_send
    with pytest.raises(MailNotConfigured, match="smtp_url is not set"):
        await outbox.send_test(TO)


async def test_smtp_url_without_email_from_stops_at_start_up() -> None:
    with pytest.raises(ConfigError, match="smtp_url is set but email_from is not"):
        Outbox.from_settings(Settings.from_mapping({"smtp_url": "smtp://127.0.0.1:1025"}))


async def test_the_outbox_renders_and_sends(relay: MailServer) -> None:
    settings = Settings.from_mapping(
        {"smtp_url": relay.url, "email_from": SENDER, "site_name": "Example Co"}
    )
    outbox = Outbox.from_settings(settings)
    assert outbox.can_send
    receipt = await outbox.send_test(TO)
    assert receipt.server == f"127.0.0.1:{relay.port}"
    assert f"127.0.0.1:{relay.port}" in relay.messages[0].body("plain")
