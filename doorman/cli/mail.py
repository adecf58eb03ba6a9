"""``doorman mail test``: send a test message and show what the mail server said."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import click

from ..mail import Outbox, Receipt, check_address
from ..settings import Settings
from ._options import one_line_errors, run, settings_options


@click.group("mail")
def mail() -> None:
    """Send mail through the server that smtp_url names."""


@mail.command("test")
@click.argument("address")
@settings_options("email_from", "template_dir")
def test_mail(settings: Settings, address: str) -> None:
    """Send a test message to ADDRESS and print the mail server's reply.

    The server comes from smtp_url (doorman.toml or DOORMAN_SMTP_URL; never a
    flag, since it may hold a password).
    """
    try:
        address = check_address(address)
    except ValueError as error:
        raise click.ClickException(f"ADDRESS {address!r}: {error}") from None
    with one_line_errors():
        outbox = Outbox.from_settings(settings)
    with _error_line_only():
        receipt: Receipt = run(outbox.send_test(address))
    click.echo(
        f"sent to {receipt.recipient} through {receipt.server} ({receipt.security}); "
        f"the server said: {receipt.reply}"
    )


@contextlib.contextmanager
def _error_line_only() -> Iterator[None]:
    """The mailer's warning, unless logging is set up: the error line already says it.

    Without a handler of its own, Python prints a warning to stderr (its
    last-resort handler), and a failure would take two lines.
    """
    logger = logging.getLogger("doorman.mail")
    quiet = logging.NullHandler()
    logger.addHandler(quiet)
    try:
        yield
    finally:
        logger.removeHandler(quiet)
