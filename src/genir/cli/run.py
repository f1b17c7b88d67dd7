"""genir run | methods | transfer: train, index, search and evaluate; what each method is."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Annotated

import typer

from genir.cli.common import (
    _SEARCH_SET,
    _fail,
    _load_config_file,
    _names,
    _run_or_fail,
    _search_overrides,
    _show_report,
    app,
    build_settings,
    run_flags,
)


def _run(config: Path | None = None, no_baselines: bool = False, no_methods: bool = False,
         set_: list[str] | None = None, redo: list[str] | None = None, fresh: bool = False, dry_run: bool = False,
         **flags: object) -> None:
    """Train, index, search and evaluate; write report.md, report.json, run files and plots.

    A second run with the same --out reuses each stage made with the same settings and data, and stops
    (naming the settings that differ) where a stage was made otherwise: --redo NAME or --fresh recompute."""
    from genir.pipeline import run as run_pipeline

    flags = {k: (v or None) if isinstance(v, list) else v for k, v in flags.items()}  # an unrepeated list: unset
    settings = build_settings(_load_config_file(config) if config else {}, flags, set_)
    if no_baselines:
        settings.baselines = []
    if no_methods:
        settings.methods = []
    if dry_run:
        from genir.dry_run import plan, render

        typer.echo(render(_run_or_fail(lambda: plan(settings, set(redo or ()), fresh))))
        return
    report = _run_or_fail(lambda: run_pipeline(settings, set(redo or ()), fresh))
    _show_report(Path(settings.out or f"runs/{report['dataset']}"), report)


def _run_signature() -> inspect.Signature:
    """``genir run``'s parameters: its own (the config file, what to recompute, --dry-run), then one flag per
    setting declared with one in the settings groups (``genir.settings.flag``), typed and explained there."""
    def option(name: str, tp: object, default: object, *decls: str, help: str) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                 annotation=Annotated[tp, typer.Option(*decls, help=help)])

    own = [
        option("config", Path | None, None, help="YAML or JSON file of settings, nested by group (training: "
               "{epochs: 5}); flags and --set override it"),
        option("no_baselines", bool, False, "--no-baselines", help="run no baseline"),
        option("no_methods", bool, False, "--no-methods", help="run the baselines only"),
    ]
    for name, (_key, decl, tp, help_text) in run_flags().items():
        if name in ("method", "baseline"):
            help_text += f": {_names(name + 's')}"
        optional = tp if type(None) in typing.get_args(tp) else tp | None
        own.append(option(name, optional, None, decl, help=help_text))
    own += [
        option("set_", list[str] | None, None, "--set", help=(
            "any setting as GROUP.KEY=VALUE, e.g. --set genret.reassign=false --set genret.codes=256; repeat "
            "('genir methods' lists the groups and their keys)")),
        option("redo", list[str] | None, None, help="recompute this stage (a method or baseline) even where --out "
               "holds it; repeat"),
        option("fresh", bool, False, help="recompute every stage of this run in --out"),
        option("dry_run", bool, False, "--dry-run", help="check everything, print each stage's settings and each "
               "training phase's optimiser steps; train and write nothing"),
    ]
    return inspect.Signature(own)


_run.__signature__ = _run_signature()
_run.__annotations__ = {p.name: p.annotation for p in _run.__signature__.parameters.values()}
run = app.command("run")(_run)


@app.command()
def methods() -> None:
    """Every method: its docid scheme, objective, search mode and settings group (keys and defaults)."""
    from genir.methods import BASELINES, GROUPS, METHODS
    from genir.settings import SHARED_GROUPS, group_to_dict

    for m in METHODS.values():
        typer.secho(m.name, bold=True)
        typer.echo(f"  {m.description}\n  docids:    {m.docids}\n  objective: {m.objective_text}\n"
                   f"  search:    {m.search_mode}\n  settings:  {m.group or '-'}\n  budgets:   {m.budgets}\n"
                   f"  texts:     {m.indexing_texts} (its indexing texts unless data.indexing_texts or a count is set)"
                   + ("" if m.can_transfer else "\n  (cannot index a new corpus without retraining: no transfer)"))
    for b in BASELINES.values():
        typer.secho(b.name, bold=True)
        typer.echo(f"  baseline: {b.description}" + ("" if b.live else " (not served by a live index)"))
    typer.echo("\nsettings groups (--set GROUP.KEY=VALUE, or nested YAML):")
    for name, cls in GROUPS.items():
        kind = "shared" if name in SHARED_GROUPS else "method"
        fallbacks = {f.name: f.metadata["fallback"] for f in dataclasses.fields(cls) if "fallback" in f.metadata}
        texts = {f.name for f in dataclasses.fields(cls) if f.metadata.get("texts")}
        values = ", ".join(f"{k}=unset (the preset's)" if k in texts and v is None else
                           f"{k}=unset ({fallbacks[k]:g})" if k in fallbacks and v is None else f"{k}={v}"
                           for k, v in group_to_dict(cls()).items())
        typer.echo(f"  {name} ({kind}): {values}")


@app.command()
def transfer(
    source: Annotated[Path, typer.Option("--from", help="run folder whose trained methods are transferred")],
    dataset: Annotated[str, typer.Option(help="target dataset name or BEIR-layout folder")],
    method: Annotated[list[str] | None, typer.Option(help="method(s) trained in --from; repeat")] = None,
    baseline: Annotated[list[str] | None, typer.Option(help="baselines run on the target (bm25, dense)")] = None,
    test_split: Annotated[str, typer.Option(help="qrels split evaluated")] = "test",
    data_dir: Annotated[str | None, typer.Option()] = None,
    qrels_dir: Annotated[str | None, typer.Option()] = None,
    beam: Annotated[int | None, typer.Option()] = None,
    out: Annotated[str | None, typer.Option(help="report folder")] = None,
    redo: Annotated[list[str] | None, typer.Option(help="recompute this stage of --out; repeat")] = None,
    fresh: Annotated[bool, typer.Option(help="recompute every stage in --out")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help=_SEARCH_SET + " (e.g. search.prefix_beam=10); "
                                                   "the models are the source's, trained as it recorded")] = None,
) -> None:
    """Zero-shot: models trained in a run folder index another corpus without retraining and search it."""
    from genir.methods import transfer_settings
    from genir.pipeline import transfer as run_transfer

    try:
        values = transfer_settings(source, dataset, method, baseline, test_split, data_dir, qrels_dir, out).to_dict()
    except ValueError as e:
        _fail(str(e))
    settings = build_settings(values, {"beam": beam}, None)
    overrides = _search_overrides(set_)
    report = _run_or_fail(lambda: run_transfer(source, settings, set(redo or ()), fresh, overrides))
    _show_report(Path(settings.out), report)
