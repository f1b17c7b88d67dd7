"""What every genir command shares: the app, settings from flags, errors as exit code 2, trained folders."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="genir: generative retrieval, trained, searched and evaluated beside BM25 and dense.")


index_app = typer.Typer(no_args_is_help=True, help="A run folder as a live index: add and remove documents, no "
                        "retraining (every method that can take a document; the others say why not).")
app.add_typer(index_app, name="index")


def error_text(e: BaseException) -> str:
    from genir.pipeline import error_text as text

    return text(e)


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _load_config_file(path: Path) -> dict:
    if not path.is_file():
        _fail(f"{path}: config file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        _fail(f"{path}: cannot parse config (not UTF-8: byte 0x{e.object[e.start]:02x} at offset {e.start})")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - report any parse error with the file name
        _fail(f"{path}: cannot parse config ({e})")
    if not isinstance(data, dict):
        _fail(f"{path}: the config must be a mapping of settings (top-level keys and groups)")
    return data


def run_flags() -> dict[str, tuple[str, str, object, str]]:
    """``genir run``'s setting flags, made from the settings groups: parameter -> (key, --flag, type, help)."""
    from genir.methods import GROUPS
    from genir.settings import command_line_flags

    return command_line_flags(GROUPS)


def build_settings(base: dict, flags: dict, sets: list[str] | None):
    """Settings from a config mapping, then flags, then ``--set group.key=value`` (each typed and checked
    before anything runs); a wrong key or value exits with code 2 and a message naming it."""
    from genir.methods import check_names, make_settings
    from genir.settings import SettingsError

    try:
        settings = make_settings(base)
        keys = {name: spec[0] for name, spec in run_flags().items()}
        for name, value in flags.items():
            if value is not None:
                settings.set(keys[name], value)
        for item in sets or []:
            key, sep, value = item.partition("=")
            if not sep:
                _fail(f"--set {item!r}: expected GROUP.KEY=VALUE")
            settings.set(key.strip(), value.strip())
        check_names(settings)
    except SettingsError as e:
        _fail(str(e))
    return settings


def _names(kind: str) -> str:
    from genir.methods import BASELINES, METHODS

    return ", ".join(METHODS if kind == "methods" else BASELINES)


def _run_or_fail(job):
    """Run a pipeline job; a bad input (data, settings, run folder) exits with code 2 and its message."""
    from genir.data.collection import DataError

    try:
        return job()
    except (DataError, KeyError, ValueError) as e:
        _fail(error_text(e))
    except OSError as e:  # a folder that cannot be written (permissions, a read-only disk, a file in the way)
        _fail(f"{e.filename or ''}: {e.strerror or e}".lstrip(": "))


def _show_report(out_dir: Path, report: dict) -> None:
    """Print the report. When a method failed (the report holds the others' rows), exit with code 2 if
    every failure was a bad input (data, settings, a damaged folder), else 1."""
    typer.echo((out_dir / "report.md").read_text(encoding="utf-8"))
    typer.secho(f"report: {out_dir / 'report.md'} ({len(report['systems'])} systems)", fg=typer.colors.GREEN)
    failed = report.get("failed") or []
    for f in failed:
        typer.secho(f"error: {f['name']} failed: {f['error']}", fg=typer.colors.RED, err=True)
    if failed:
        raise typer.Exit(2 if all(f.get("input_error") for f in failed) else 1)


def _method_searcher(method_dir: Path, beam: int | None, dataset: str | None, sets: list[str] | None = None):
    """A trained folder's searcher, exactly as the run measured it (``genir.retriever.Retriever.load``)."""
    from genir.data.collection import DataError
    from genir.retriever import Retriever
    from genir.settings import SettingsError

    overrides = _search_overrides(sets)
    try:
        docs = None
        if dataset:
            from genir.data import load_dataset

            docs = list(load_dataset(dataset).corpus.values())
        retriever = Retriever.load(method_dir, docs=docs, beam=beam, overrides=overrides)
        if dataset and not (retriever.method is not None and retriever.method.needs_corpus):
            _fail(f"--dataset: {retriever.name} searches the docids it was trained on, not a corpus it encodes "
                  "(--dataset is for tied-atomic folders; genir transfer indexes another corpus)")
        return retriever.searcher
    except (DataError, KeyError, ValueError, SettingsError) as e:
        _fail(error_text(e))


_SEARCH_SET = "a search setting other than the run's, as GROUP.KEY=VALUE (e.g. glen.tie_break=random); repeat"


def _search_overrides(sets: list[str] | None) -> dict[str, str]:
    """``--set GROUP.KEY=VALUE`` items as overrides (checked by whoever opens the searchers)."""
    overrides = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--set {item!r}: expected GROUP.KEY=VALUE")
        overrides[key.strip()] = value.strip()
    return overrides


def _live(run_dir: Path, methods: list[str] | None = None, beam: int | None = None, baselines=None,
          sets: list[str] | None = None):
    from genir.data.collection import DataError
    from genir.live import LIVE_BASELINES, LiveIndex
    from genir.settings import SettingsError

    try:
        return LiveIndex(run_dir, methods, LIVE_BASELINES if baselines is None else baselines, beam,
                         overrides=_search_overrides(sets))
    except (DataError, KeyError, ValueError, SettingsError) as e:
        _fail(error_text(e))
