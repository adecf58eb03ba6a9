"""Messages from templates (overridable from template_dir) and links from public_url only."""

from __future__ import annotations

from pathlib import Path

import pytest

from doorman.exceptions import NoTrustedOrigin
from doorman.mail import LinkBuilder, MailTemplates
from doorman.origins import AllowedOrigins
from doorman.settings import Settings

# -- templates --------------------------------------------------------------------------


def test_a_message_has_a_subject_and_text_and_html_alternatives() -> None:
    message = MailTemplates(site_name="Example Co").message(
        "test", to="alice@example.com", server="smtp.example.com:587", sent_at="12:00"
    )
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "Test message from Example Co"
    assert message.get_content_type() == "multipart/alternative"
    text, html = (part for part in message.iter_parts())
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert "smtp.example.com:587" in text.get_content()
    assert "<code>smtp.example.com:587</code>" in html.get_content()


def test_html_is_escaped_and_the_text_is_not(tmp_path: Path) -> None:
    """A username with markup in it is text in the HTML part, and as typed in the text part."""
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "hello_subject.txt").write_text("Hello\n  {{ name }}\n")
    (tmp_path / "mail" / "hello.txt").write_text("Hello {{ name }}\n")
    (tmp_path / "mail" / "hello.html").write_text(
        '{% extends "mail/base.html" %}{% block content %}<p>Hello {{ name }}</p>{% endblock %}'
    )
    templates = MailTemplates(template_dir=str(tmp_path), site_name="Example Co")
    message = templates.message("hello", to="alice@example.com", name="<b>al & ice</b>")
    assert message["Subject"] == "Hello <b>al & ice</b>"  # folded onto one line
    text, html = (part.get_content() for part in message.iter_parts())
    assert text == "Hello <b>al & ice</b>\n"
    assert "<p>Hello &lt;b&gt;al &amp; ice&lt;/b&gt;</p>" in html and "Example Co" in html


def test_a_deployer_overrides_one_template_and_keeps_the_others(tmp_path: Path) -> None:
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "test_subject.txt").write_text("Our own subject for {{ site_name }}")
    message = MailTemplates(template_dir=str(tmp_path), site_name="Example Co").message(
        "test", to="alice@example.com", server="s", sent_at="t"
    )
    assert message["Subject"] == "Our own subject for Example Co"
    plain = message.get_body(("plain",))
    assert plain is not None and "a test message from Example Co" in plain.get_content()


def test_a_missing_variable_is_an_error_not_an_empty_link() -> None:
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        MailTemplates().message("test", to="alice@example.com", server="s")


def test_a_recipient_cannot_add_a_header() -> None:
    with pytest.raises(ValueError, match="give one email address"):
        MailTemplates().message(
            "test", to="alice@example.com\r\nBcc: eve@example.com", server="s", sent_at="t"
        )


# -- links ------------------------------------------------------------------------------


def scope(host: str, scheme: str = "https") -> dict[str, object]:
    return {"type": "http", "scheme": scheme, "headers": [(b"host", host.encode("latin-1"))]}


def test_a_link_starts_with_public_url_whatever_the_host_header() -> None:
    links = LinkBuilder(public_url="https://auth.example.com/")
    assert links.can_build
    assert links.url("password-reset", "abc") == "https://auth.example.com/-/password-reset/abc"
    assert (
        links.url("password-reset", "abc", scope=scope("evil.example"))
        == "https://auth.example.com/-/password-reset/abc"
    )


def test_the_route_prefix_and_a_path_in_public_url() -> None:
    links = LinkBuilder(public_url="https://example.com/auth", route_prefix="/sign-in/")
    assert links.url("verify-email", "t") == "https://example.com/auth/sign-in/verify-email/t"


def test_each_segment_is_encoded_whole() -> None:
    links = LinkBuilder(public_url="https://auth.example.com")
    assert links.url("invite", "a/b?c#d e") == "https://auth.example.com/-/invite/a%2Fb%3Fc%23d%20e"


def test_without_public_url_a_host_header_builds_no_link() -> None:
    """Host-header poisoning: whoever asks for Alice's reset must not choose its host."""
    links = LinkBuilder(public_url=None)
    assert not links.can_build
    for where in (None, scope("evil.example"), scope("auth.example.com")):
        with pytest.raises(NoTrustedOrigin, match="set public_url") as caught:
            links.url("password-reset", "abc", scope=where)
        assert caught.value.status_code == 503 and "abc" not in str(caught.value)


def test_without_public_url_an_allowed_origin_is_trusted() -> None:
    links = LinkBuilder(
        public_url=None, allowed_origins=AllowedOrigins(["https://auth.example.com"])
    )
    assert links.can_build
    assert (
        links.url("password-reset", "abc", scope=scope("auth.example.com"))
        == "https://auth.example.com/-/password-reset/abc"
    )
    for host, scheme in [("evil.example", "https"), ("auth.example.com", "http")]:
        with pytest.raises(NoTrustedOrigin):
            links.url("password-reset", "abc", scope=scope(host, scheme))
    with pytest.raises(NoTrustedOrigin):  # no request: nothing to go by
        links.url("password-reset", "abc")


def test_from_settings() -> None:
    settings = Settings.from_mapping(
        {"public_url": "https://auth.example.com", "route_prefix": "/auth/"}
    )
    links = LinkBuilder.from_settings(settings)
    assert links.url("invite", "t") == "https://auth.example.com/auth/invite/t"
