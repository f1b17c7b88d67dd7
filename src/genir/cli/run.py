"""genir run | methods | transfer: train, index, search and evaluate; what each method is."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from genir.cli.common import (
    RUN_FLAGS,
    _fail,
    _load_config_file,
    _names,
    _run_or_fail,
    _show_report,
    app,
    build_settings,
)


@app.command()
def run(
    config: Annotated[Path | None, typer.Option(help="YAML or JSON file of settings, nested by group "
                                                "(training: {epochs: 5}); flags and --set override it")] = None,
    dataset: Annotated[str | None, typer.Option(help="dataset name (scifact, ...) or BEIR-layout folder")] = None,
    data_dir: Annotated[str | None, typer.Option(help="folder holding datasets by name (checked first)")] = None,
    qrels_dir: Annotated[str | None, typer.Option(help="qrels folder inside the dataset (graded variants)")] = None,
    train_split: Annotated[str | None, typer.Option(help="qrels split used for training queries")] = None,
    test_split: Annotated[str | None, typer.Option(help="qrels split evaluated")] = None,
    method: Annotated[list[str] | None, typer.Option(help=f"method, repeat the flag: {_names('methods')}")] = None,
    baseline: Annotated[list[str] | None, typer.Option(help=f"baseline, repeat: {_names('baselines')}")] = None,
    no_baselines: Annotated[bool, typer.Option("--no-baselines", help="run no baseline")] = False,
    no_methods: Annotated[bool, typer.Option("--no-methods", help="run the baselines only")] = False,
    backbone: Annotated[str | None, typer.Option(help="'minilm' (bundled) or any HF model name or path")] = None,
    encoder: Annotated[str | None, typer.Option(help="frozen (cached states) or full (fine-tune)")] = None,
    device: Annotated[str | None, typer.Option(help="auto (cuda when available) | cpu | cuda")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32 | bf16 (autocast in training)")] = None,
    epochs: Annotated[float | None, typer.Option(
        help="epochs of every training phase of every method ('genir methods' says how each takes it); unset: "
             "each phase's own default")] = None,
    batch_size: Annotated[int | None, typer.Option(help="batch size of every training phase, likewise")] = None,
    lr: Annotated[float | None, typer.Option(help="learning rate of every training phase, likewise")] = None,
    beam: Annotated[int | None, typer.Option(help="beam size for the reported search")] = None,
    semantic_c: Annotated[int | None, typer.Option(help="children per node / leaf size of semantic docids")] = None,
    pseudo_queries: Annotated[str | None, typer.Option(
        help="docasquery | path to TSV/JSONL queries | doc2query:<model name or path>")] = None,
    holdout: Annotated[float | None, typer.Option(
        help="tune: train without this share of training queries and evaluate on them, not on test")] = None,
    max_test_queries: Annotated[int | None, typer.Option(help="evaluate only the first N test queries")] = None,
    new_docs: Annotated[float | None, typer.Option(
        help="hold this share of documents out of training; report them as the 'new-docs' subset")] = None,
    tied_mode: Annotated[str | None, typer.Option(help="tied-atomic search: generative or dense")] = None,
    teacher_scores: Annotated[str | None, typer.Option(
        help="tied-atomic-distill: teacher scores, TSV query_id<TAB>doc_id<TAB>score or a TREC run; or "
             "dense+bm25 (genir's own teacher: the dense encoder's cosine + tied.teacher_bm25 x BM25)")] = None,
    out: Annotated[str | None, typer.Option(help="report folder (a second run with it resumes)")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help=(
        "any setting as GROUP.KEY=VALUE, e.g. --set genret.reassign=false --set genret.codes=256; repeat "
        "('genir methods' lists the groups and their keys)"))] = None,
    redo: Annotated[list[str] | None, typer.Option(
        help="recompute this stage (a method or baseline) where --out holds it with other settings; repeat")] = None,
    fresh: Annotated[bool, typer.Option(help="recompute every stage of this run in --out")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=(
        "check everything, print each stage's settings and each training phase's optimiser steps; "
        "train and write nothing"))] = False,
) -> None:
    """Train, index, search and evaluate; write report.md, report.json, run files and plots.

    A second run with the same --out reuses each stage made with the same settings and data, and stops
    (naming the settings that differ) where a stage was made otherwise: --redo NAME or --fresh recompute."""
    from genir.pipeline import run as run_pipeline

    flags = {k: v for k, v in locals().items() if k in RUN_FLAGS}
    flags["method"], flags["baseline"] = method or None, baseline or None
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


@app.command()
def methods() -> None:
    """Every method: its docid scheme, objective, search mode and settings group (keys and defaults)."""
    from genir.methods import BASELINES, GROUPS, METHODS
    from genir.settings import SHARED_GROUPS, group_to_dict

    for m in METHODS.values():
        typer.secho(m.name, bold=True)
        typer.echo(f"  {m.description}\n  docids:    {m.docids}\n  objective: {m.objective_text}\n"
                   f"  search:    {m.search_mode}\n  settings:  {m.group or '-'}\n  budgets:   {m.budgets}"
                   + ("" if m.can_transfer else "\n  (cannot index a new corpus without retraining: no transfer)"))
    for b in BASELINES.values():
        typer.secho(b.name, bold=True)
        typer.echo(f"  baseline: {b.description}" + ("" if b.live else " (not served by a live index)"))
    typer.echo("\nsettings groups (--set GROUP.KEY=VALUE, or nested YAML):")
    for name, cls in GROUPS.items():
        kind = "shared" if name in SHARED_GROUPS else "method"
        fallbacks = {f.name: f.metadata["fallback"] for f in dataclasses.fields(cls) if "fallback" in f.metadata}
        values = ", ".join(f"{k}=unset ({fallbacks[k]:g})" if k in fallbacks and v is None else f"{k}={v}"
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
) -> None:
    """Zero-shot: models trained in a run folder index another corpus without retraining and search it."""
    from genir.methods import METHODS, read_settings
    from genir.pipeline import transfer as run_transfer

    try:
        settings = read_settings(source)
    except ValueError as e:
        _fail(str(e))
    values = settings.to_dict()
    values["data"].update({"dataset": dataset, "data_dir": data_dir, "train_split": None, "test_split": test_split,
                           "qrels_dir": qrels_dir or "qrels", "holdout": 0.0, "new_docs": 0.0,
                           "max_test_queries": None})
    values["methods"] = method or [m for m in values["methods"] if m in METHODS and METHODS[m].can_transfer]
    values["baselines"] = list(baseline) if baseline is not None else ["bm25", "dense"]
    values["out"] = out or f"runs/{Path(dataset).name}-from-{source.name}"
    settings = build_settings(values, {"beam": beam}, None)
    report = _run_or_fail(lambda: run_transfer(source, settings, set(redo or ()), fresh))
    _show_report(Path(settings.out), report)
