"""Docs that cannot drift from the code: every `genir ...` command in the README's and docs' code blocks
parses with the CLI's own parser and its settings validate; the Python examples run; every settings key the
docs name exists; every relative link points at a file; every table of measurements names its command."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

from genir.cli import app
from genir.methods import GROUPS, make_settings
from genir.settings import SettingsError, settable_fields

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _blocks(page: Path, languages: tuple[str, ...]) -> list[tuple[int, str]]:
    """(first line number, text) of each fenced code block in one of ``languages`` ("" = no language)."""
    out, lines, start, lang = [], page.read_text(encoding="utf-8").splitlines(), None, ""
    for i, line in enumerate(lines, 1):
        if line.startswith("```"):
            if start is None:
                start, lang = i, line[3:].strip()
            else:
                if lang in languages:
                    out.append((start + 1, "\n".join(lines[start:i - 1])))
                start = None
    return out


def _commands() -> list[tuple[str, list[str]]]:
    """('page:line', genir argv) of every genir command in a shell block (continuations joined, each part of
    `&&`, `;` and `|` on its own; `torchrun ... -m genir.cli` too)."""
    found = []
    for page in PAGES:
        for first, text in _blocks(page, ("bash", "sh", "shell", "")):
            logical = re.sub(r"\\\n\s*", " ", text).splitlines()
            for offset, line in enumerate(logical):
                try:
                    tokens = shlex.split(line, comments=True)
                except ValueError as e:
                    raise AssertionError(f"{page.name}:{first + offset}: {e}: {line}") from None
                part: list[str] = []
                for tok in [*tokens, "&&"]:
                    if tok not in ("&&", ";", "|", "||"):
                        part.append(tok)
                        continue
                    argv = _genir_argv(part)
                    if argv is not None:
                        found.append((f"{page.relative_to(ROOT)}:{first + offset}", argv))
                    part = []
    return found


def _genir_argv(tokens: list[str]) -> list[str] | None:
    while tokens and re.match(r"^[A-Z_]+=", tokens[0]):  # VAR=value genir ...
        tokens = tokens[1:]
    if tokens[:1] == ["genir"]:
        return tokens[1:]
    if "genir.cli" in tokens and tokens[tokens.index("genir.cli") - 1] == "-m":
        return tokens[tokens.index("genir.cli") + 1:]
    return None


COMMANDS = _commands()


def test_the_docs_hold_the_commands_they_should():
    names = {argv[0] for _, argv in COMMANDS}
    assert {"run", "search", "serve", "index", "transfer", "methods", "evaluate", "docids"} <= names, names
    assert len(COMMANDS) > 40


@pytest.mark.parametrize("where, argv", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_every_genir_command_in_the_docs_parses_and_validates(where, argv):
    group = typer.main.get_command(app)
    try:
        ctx = group.make_context("genir", list(argv))
        cmd, args = group, _rest(ctx)
        while isinstance(cmd, click.Group):
            name, cmd, args = cmd.resolve_command(ctx, args)
            ctx = cmd.make_context(name, args, parent=ctx)
            args = _rest(ctx) if isinstance(cmd, click.Group) else args
    except click.exceptions.Exit:
        return  # --help
    except click.ClickException as e:
        raise AssertionError(f"{where}: genir {' '.join(argv)}: {e.format_message()}") from None
    params = ctx.params
    if cmd.name == "run":
        from genir.cli.common import build_settings, run_flags

        flags = {k: v or None if isinstance(v, list) else v for k, v in params.items() if k in run_flags()}
        from genir.methods import check_read

        try:
            settings = build_settings({}, flags, params.get("set_"))
            if params.get("no_methods"):
                settings.methods = []
            check_read(settings)  # no setting that no stage of the command would read
        except (typer.Exit, SystemExit, SettingsError) as e:
            raise AssertionError(f"{where}: genir {' '.join(argv)}: its settings do not validate ({e})") from None
    else:
        for item in params.get("set_") or []:
            key, _, value = item.partition("=")
            try:
                make_settings({}).set(key, value)
            except SettingsError as e:
                raise AssertionError(f"{where}: --set {item}: {e}") from None


def _rest(ctx: click.Context) -> list[str]:
    """A group's arguments after its own options: the subcommand and what follows it."""
    return [*(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])), *ctx.args]


KEY = re.compile(r"(?:`|--set )((?:" + "|".join(GROUPS) + r")\.[a-z_0-9]+)(?=[=` ])")


def test_every_settings_key_the_docs_name_exists():
    known = {f"{g}.{k}" for g, cls in GROUPS.items() for k in settable_fields(cls)}
    missing = []
    for page in PAGES:
        for i, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if "unknown setting" in line:  # a refusal quoted in a bench's table names a wrong key on purpose
                continue
            for key in KEY.findall(line):
                if key not in known and not key.endswith(("_py", ".py")):
                    missing.append(f"{page.relative_to(ROOT)}:{i}: {key}")
    assert not missing, "settings the docs name that do not exist:\n" + "\n".join(missing)


def test_every_relative_link_points_at_a_file():
    broken = []
    for page in PAGES:
        for i, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", line):
                if not re.match(r"^[a-z]+://", target) and not (page.parent / target).exists():
                    broken.append(f"{page.relative_to(ROOT)}:{i}: {target}")
    assert not broken, "\n".join(broken)


COMMAND_NAMED = re.compile(r"genir (run|transfer|serve|search|index|evaluate)|python3? bench/|bash bench/|torchrun")


def test_every_measurement_table_names_the_command_that_makes_it():
    """In docs/experiments, each section (a heading to the next) that holds a table names a command."""
    unnamed = []
    for page in sorted((ROOT / "docs" / "experiments").glob("*.md")):
        sections = re.split(r"\n(?=#{1,3} )", page.read_text(encoding="utf-8"))
        for section in sections:
            if re.search(r"^\|[-| ]+\|$", section, re.M) and not COMMAND_NAMED.search(section):
                unnamed.append(f"{page.name}: {section.splitlines()[0][:80]}")
    assert not unnamed, "tables without the command that makes them:\n" + "\n".join(unnamed)


@pytest.fixture(scope="module")
def docs_workdir(tmp_path_factory, shared_datasets):
    """A working directory where the docs' Python examples find what they name: `scifact` and `cisi` (slices
    of the real ones, under $GENIR_DATASETS) and a run `runs/scifact` with dsi-atomic and dsi-semantic."""
    from tests.test_pipeline import _slice

    work = tmp_path_factory.mktemp("docs")
    data = work / "datasets"
    data.mkdir()
    _slice(tmp_path_factory, shared_datasets, "scifact", {"train": 20, "test": 8}, 60).rename(data / "scifact")
    _slice(tmp_path_factory, shared_datasets, "cisi", {"test": 3}, 40).rename(data / "cisi")
    env = {**os.environ, "GENIR_DATASETS": str(data)}
    subprocess.run([sys.executable, "-m", "genir.cli", "run", "--dataset", "scifact", "--method", "dsi-atomic",
                    "--method", "dsi-semantic", "--no-baselines", "--epochs", "1", "--texts", "light",
                    "--out", "runs/scifact"],
                   cwd=work, env=env, check=True, capture_output=True)
    return work, env


PYTHON_BLOCKS = [(f"{p.relative_to(ROOT)}:{line}", text) for p in PAGES if "experiments" not in p.parts
                 for line, text in _blocks(p, ("python",))]


@pytest.mark.parametrize("where, code", PYTHON_BLOCKS, ids=[w for w, _ in PYTHON_BLOCKS])
def test_every_python_example_in_the_docs_runs(where, code, docs_workdir):
    work, env = docs_workdir
    res = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, f"{where}:\n{res.stderr[-3000:]}"
