"""A missing optional package is named with the extra that installs it, in one line.

Each case runs in a real subprocess in which the named modules cannot be
imported: a ``sitecustomize`` (on ``PYTHONPATH``) puts a finder first on
``sys.meta_path`` that refuses them as a missing package would. Nothing is
uninstalled, so the check is cheap and the same on every machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import free_port
from .matrix import Environment, environment, exercised

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parent.parent
PORT = "<a free port>"

BLOCKER = '''
import os
import sys


class NotInstalled:
    """Refuses the top-level packages in DOORMAN_TEST_NOT_INSTALLED, as if absent."""

    names = set(os.environ["DOORMAN_TEST_NOT_INSTALLED"].split(","))

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
'''


def without(
    tmp_path: Path, missing: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` in ``tmp_path`` with the packages ``missing`` (comma-separated) gone."""
    (tmp_path / "blocker").mkdir(exist_ok=True)
    (tmp_path / "blocker" / "sitecustomize.py").write_text(BLOCKER)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOORMAN_")}
    path = [str(tmp_path / "blocker"), environment.get("PYTHONPATH", "")]
    environment.update(
        PYTHONPATH=os.pathsep.join(filter(None, path)),
        DOORMAN_TEST_NOT_INSTALLED=missing,
        DOORMAN_DB=str(tmp_path / "doorman.db"),
        **(env or {}),
    )
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=60,
        check=False,
    )


def test_the_blocker_blocks(tmp_path: Path) -> None:
    """The control: in such a process the package is not there; outside, it is."""
    result = without(tmp_path, "redis", "-c", "import redis")
    assert result.returncode == 1 and "No module named 'redis'" in result.stderr
    assert without(tmp_path, "nothing", "-c", "import redis").returncode == 0


def needs(module: str, extra: str, purpose: str) -> str:
    return f"{purpose} needs {module}, which is not installed: pip install 'doorman[{extra}]'"


SERVER = needs("{}", "server", "the sign-in server")
CLI_CASES = {
    "asyncpg": (
        ["users", "list", "--db", "postgresql://doorman@127.0.0.1:1/doorman"],
        {},
        needs("asyncpg", "postgres", "a postgresql:// database"),
    ),
    "redis": (
        ["serve", "--port", PORT, "--sessions", "redis://127.0.0.1:1/0"],
        {},
        needs("redis", "redis", "the Redis session store"),
    ),
    "sentry_sdk": (
        ["serve", "--port", PORT],
        {"DOORMAN_SENTRY": "https://key@sentry.example.com/1"},
        needs("sentry_sdk", "sentry", "the sentry setting"),
    ),
    "uvicorn": (["serve", "--port", PORT], {}, SERVER.format("uvicorn")),
    "starlette": (["serve", "--port", PORT], {}, SERVER.format("starlette")),
    "jinja2": (["serve", "--port", PORT], {}, SERVER.format("jinja2")),
    "aiosmtplib": (
        ["mail", "test", "alice@example.com"],
        {"DOORMAN_SMTP_URL": "smtp://127.0.0.1:1", "DOORMAN_EMAIL_FROM": "noreply@example.com"},
        needs("aiosmtplib", "server", "sending mail"),
    ),
    "python_multipart": (
        ["protect", "examples.members:app", "--app-dir", str(ROOT), "--port", PORT],
        {},
        SERVER.format("python_multipart"),
    ),
}


@pytest.mark.parametrize(("missing", "case"), list(CLI_CASES.items()), ids=list(CLI_CASES))
def test_the_cli_names_the_extra_in_one_line(
    tmp_path: Path, missing: str, case: tuple[list[str], dict[str, str], str]
) -> None:
    args, env, message = case
    args = [str(free_port()) if arg == PORT else arg for arg in args]
    result = without(tmp_path, missing, "-m", "doorman", *args, env=env)
    assert (result.returncode, result.stdout) == (1, ""), result
    assert result.stderr == f"Error: {message}\n"


LIBRARY_CASES = [
    ("redis", "from doorman import RedisStore", needs("redis", "redis", "the Redis session store")),
    (
        "starlette",
        "from doorman.integrations.starlette import exception_handlers",
        needs("starlette", "server", "doorman.integrations.starlette"),
    ),
    ("starlette", "from doorman.server.app import create_app", SERVER.format("starlette")),
    (
        "httpx",
        "from doorman import ExistingCookiesGate\n"  # the import works; building a gate does not
        "ExistingCookiesGate(None, api_url='http://127.0.0.1:1/-/whoami',"
        " auth_redirect_url='http://127.0.0.1:1/-/login',"
        " original_cookies=['doorman_session'], secret='s' * 32)",
        needs("httpx", "gate", "ExistingCookiesGate"),
    ),
    (
        "sentry_sdk",
        "from doorman.integrations.sentry import with_sentry\n"
        "with_sentry(None, {'dsn': 'https://key@sentry.example.com/1'})",
        needs("sentry_sdk", "sentry", "the sentry setting"),
    ),
    (
        "aiosmtplib",
        "from doorman.mail import SMTPMailer\n"
        "SMTPMailer('smtp://127.0.0.1:1025', sender='noreply@example.com')",
        needs("aiosmtplib", "server", "sending mail"),
    ),
    (
        "jinja2",
        "from doorman.mail import MailTemplates\nMailTemplates()",
        needs("jinja2", "server", "mail templates"),
    ),
    (
        "asyncpg",
        "from doorman.db import create_engine\n"
        "create_engine('postgresql://doorman@127.0.0.1:1/doorman')",
        needs("asyncpg", "postgres", "a postgresql:// database"),
    ),
]


@pytest.mark.parametrize(
    ("missing", "code", "message"), LIBRARY_CASES, ids=[case[0] for case in LIBRARY_CASES]
)
def test_a_library_user_gets_an_import_error_naming_the_extra(
    tmp_path: Path, missing: str, code: str, message: str
) -> None:
    result = without(tmp_path, missing, "-c", code)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == f"doorman.exceptions.MissingDependency: {message}"
    assert "No module named" not in result.stderr  # not chained to the finder's error
    caught = without(
        tmp_path,
        missing,
        "-c",
        "import doorman\ntry:\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + "except ImportError as error:\n"
        "    assert isinstance(error, (ModuleNotFoundError, doorman.DoormanError))\n"
        "    print(error.name, '|', error)\n",
    )
    assert caught.returncode == 0, caught.stderr
    assert caught.stdout == f"{missing} | {message}\n"


# -- the core install, for real: `pip install doorman` in an environment of its own -------

#: What the extras bring (import names); none of them comes with the core install.
EXTRA_MODULES = [
    "starlette", "uvicorn", "jinja2", "multipart", "python_multipart", "ua_parser",
    "httpx", "redis", "asyncpg", "sentry_sdk", "datasette", "fastapi", "aiosmtplib",
]  # fmt: skip


@pytest.fixture(scope="module")
def core() -> Environment:
    env = environment("core", "doorman")
    exercised("doorman's core install, without any extra")
    return env


def test_the_core_install_holds_no_extra(core: Environment) -> None:
    code = f"import importlib.util as u; print([m for m in {EXTRA_MODULES} if u.find_spec(m)])"
    result = core.run("python", "-c", code)
    assert (result.returncode, result.stdout) == (0, "[]\n"), result.stderr


def test_doorman_and_the_gate_import_with_the_core_install_alone(core: Environment) -> None:
    code = (
        "import doorman, doorman.gate, doorman.config, doorman.cli\n"
        "from doorman import AuthMiddleware, Doorman, ExistingCookiesGate, SessionMiddleware\n"
        "from doorman.stores import CookieStore, SQLStore\n"
        "print('imported')"
    )
    result = core.run("python", "-c", code)
    assert (result.returncode, result.stdout) == (0, "imported\n"), result.stderr


def named_extra(message: str) -> re.Pattern[str]:
    """``message`` with any module name: which one the core install misses first may vary."""
    purpose, _, rest = message.partition(" needs ")
    return re.compile(re.escape(purpose) + r" needs \w+" + re.escape(rest[rest.index(",") :]))


@pytest.mark.parametrize(
    ("code", "message"),
    [case[1:] for case in LIBRARY_CASES],
    ids=[case[0] for case in LIBRARY_CASES],
)
def test_each_extras_feature_names_its_extra_in_the_core_install(
    core: Environment, code: str, message: str
) -> None:
    result = core.run("python", "-c", code)
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert named_extra(f"doorman.exceptions.MissingDependency: {message}").fullmatch(last), last


def test_doorman_serve_names_the_server_extra_in_the_core_install(
    core: Environment, tmp_path: Path
) -> None:
    result = core.run("doorman", "serve", "--port", str(free_port()), cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, ""), result
    assert named_extra(f"Error: {SERVER}").fullmatch(result.stderr.strip()), result.stderr
