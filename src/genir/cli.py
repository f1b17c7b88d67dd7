"""The genir command line: run | methods | transfer | evaluate | search | serve | index | docids | datasets."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

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


# command-line flags -> settings keys (group.key, or a top-level key)
RUN_FLAGS = {"dataset": "data.dataset", "data_dir": "data.data_dir", "qrels_dir": "data.qrels_dir",
             "train_split": "data.train_split", "test_split": "data.test_split", "method": "methods",
             "baseline": "baselines", "backbone": "model.backbone", "encoder": "model.encoder",
             "epochs": "training.epochs", "batch_size": "training.batch_size", "lr": "training.lr",
             "seed": "training.seed", "beam": "search.beam", "semantic_c": "dsi.semantic_c",
             "pseudo_queries": "data.pseudo_queries", "holdout": "data.holdout",
             "max_test_queries": "data.max_test_queries", "new_docs": "data.new_docs", "tied_mode": "tied.mode",
             "teacher_scores": "tied.teacher_scores", "device": "training.device", "precision": "training.precision",
             "out": "out"}


def build_settings(base: dict, flags: dict, sets: list[str] | None):
    """Settings from a config mapping, then flags, then ``--set group.key=value`` (each typed and checked
    before anything runs); a wrong key or value exits with code 2 and a message naming it."""
    from genir.methods import check_names, make_settings
    from genir.settings import SettingsError

    try:
        settings = make_settings(base)
        for name, value in flags.items():
            if value is not None:
                settings.set(RUN_FLAGS[name], value)
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


def _run_or_fail(job):
    """Run a pipeline job; a bad input (data, settings, run folder) exits with code 2 and its message."""
    from genir.data.collection import DataError

    try:
        return job()
    except (DataError, KeyError, ValueError) as e:
        _fail(error_text(e))


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
    typer.echo(f"\nbaselines: {', '.join(BASELINES)}\n\nsettings groups (--set GROUP.KEY=VALUE, or nested YAML):")
    for name, cls in GROUPS.items():
        kind = "shared" if name in SHARED_GROUPS else "method"
        values = ", ".join(f"{k}={v}" for k, v in group_to_dict(cls()).items())
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


@app.command()
def evaluate(
    run_file: Annotated[Path, typer.Argument(help="TREC run file")],
    dataset: Annotated[str, typer.Option(help="dataset name or folder")],
    split: Annotated[str, typer.Option()] = "test",
    train_split: Annotated[str | None, typer.Option(help="for seen/unseen subsets")] = "train",
    data_dir: Annotated[str | None, typer.Option()] = None,
    qrels_dir: Annotated[str, typer.Option()] = "qrels",
) -> None:
    """Evaluate a TREC run file on a dataset's qrels (full, and seen/unseen when a train split exists)."""
    from genir.data import load_dataset, seen_unseen
    from genir.data.collection import DataError
    from genir.evaluation import evaluate as evaluate_run
    from genir.evaluation import read_run

    try:
        coll = load_dataset(dataset, data_dir, qrels_dir)
        results = read_run(run_file)
        qrels = coll.qrels_for(split)
    except (DataError, KeyError, OSError) as e:
        _fail(error_text(e))
    if not set(results) & set(qrels):
        _fail(f"{run_file}: none of its {len(results)} queries is judged in {coll.name}'s {split} qrels "
              "(a run of another dataset or split?)")
    subsets = {}
    if train_split and train_split in coll.qrels and train_split != split:
        seen, unseen = seen_unseen(coll.qrels[train_split], qrels)
        subsets = {"seen": seen, "unseen": unseen}
    table = evaluate_run(results, qrels, subsets=subsets)
    typer.echo(json.dumps(table, indent=1))


def _method_searcher(method_dir: Path, beam: int | None, dataset: str | None, sets: list[str] | None = None):
    """A trained method folder's searcher, exactly as the run measured it (``genir.methods.open_method_folder``)."""
    from genir.data.collection import DataError
    from genir.methods import open_method_folder
    from genir.settings import SettingsError

    overrides = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--set {item!r}: expected GROUP.KEY=VALUE")
        overrides[key.strip()] = value.strip()
    try:
        docs = None
        if dataset:
            from genir.data import load_dataset

            docs = list(load_dataset(dataset).corpus.values())
        return open_method_folder(method_dir, beam, docs, overrides)
    except (DataError, KeyError, ValueError, SettingsError) as e:
        _fail(error_text(e))


_SEARCH_SET = "a search setting other than the run's, as GROUP.KEY=VALUE (e.g. glen.tie_break=random); repeat"


@app.command()
def search(
    method_dir: Annotated[Path, typer.Argument(help="a method folder of a run (holds model/ and docids/)")],
    query: Annotated[list[str], typer.Argument(help="query text(s)")],
    k: Annotated[int, typer.Option()] = 10,
    beam: Annotated[int | None, typer.Option(help="beam size (default: the run's)")] = None,
    dataset: Annotated[str | None, typer.Option(help="the corpus to encode for tied-atomic folders "
                                                "(default: the run's dataset)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help=_SEARCH_SET)] = None,
) -> None:
    """Search a trained generative retriever, as the run's report did: prints doc ids and scores as JSON lines."""
    if k < 1:
        _fail(f"--k: must be at least 1, got {k}")
    if beam is not None and beam < 1:
        _fail(f"--beam: must be at least 1, got {beam}")
    if (method_dir.parent / "live").is_dir() and not dataset and not set_:  # documents added or removed
        searcher = _live(method_dir.parent, [method_dir.name], beam).searcher(method_dir.name)
    else:
        searcher = _method_searcher(method_dir, beam, dataset, set_)
    results = searcher.batch_search({str(i): q for i, q in enumerate(query)}, k)
    for i, q in enumerate(query):
        typer.echo(json.dumps({"query": q, "hits": [[h.doc_id, round(h.score, 4)] for h in results[str(i)]]}))


@app.command()
def serve(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (every trained method), or one method folder of it")],
    method: Annotated[list[str] | None, typer.Option(help="serve only these methods (repeat)")] = None,
    baseline: Annotated[list[str] | None, typer.Option(help="bm25 and/or dense (default both; 'none' for none)")
                        ] = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    beam: Annotated[int | None, typer.Option(help="beam size (default: the run's)")] = None,
    max_batch: Annotated[int, typer.Option(help="queries batched into one beam search")] = 64,
) -> None:
    """Serve a run over HTTP: a web page at /, GET/POST /search, GET /documents/{id}, GET /inspect,
    POST /documents and DELETE /documents/{id} (the live index), GET /health; OpenAPI docs at /docs."""
    from genir.serve import serve as serve_app

    if not 0 <= port <= 65535:
        _fail(f"--port: must be between 0 and 65535, got {port}")
    if beam is not None and beam < 1:
        _fail(f"--beam: must be at least 1, got {beam}")
    if max_batch < 1:
        _fail(f"--max-batch: must be at least 1, got {max_batch}")
    if (run_dir / "model").is_dir() and not (run_dir / "config.json").exists():  # one method folder
        method, run_dir = [run_dir.name], run_dir.parent
    baselines = [] if baseline == ["none"] else baseline
    index = _live(run_dir, method, beam, baselines)
    for name in index.names:  # open every searcher now: the first request is not the one that waits
        index.searcher(name)
    typer.echo(f"serving {', '.join(index.names)} on http://{host}:{port}/ (API docs: /docs)")
    serve_app(index, host, port, max_batch)


def _live(run_dir: Path, methods: list[str] | None = None, beam: int | None = None, baselines=None):
    from genir.data.collection import DataError
    from genir.live import BASELINES, LiveIndex

    try:
        return LiveIndex(run_dir, methods, BASELINES if baselines is None else baselines, beam)
    except (DataError, KeyError, ValueError) as e:
        _fail(error_text(e))


@index_app.command("add")
def index_add(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (genir run --out)")],
    documents: Annotated[Path, typer.Argument(help="JSONL: one {\"_id\", \"text\", \"title\"?} per line")],
    method: Annotated[list[str] | None, typer.Option(help="only these methods (default: every trained one)")] = None,
) -> None:
    """Index new documents in every method that can take one without retraining, and in BM25 and dense.
    The change is saved in RUN/live/ (the trained folders stay as they were) and searchable at once."""
    from genir.data.collection import DataError, read_documents
    from genir.live import LiveIndexError

    try:
        docs = read_documents(documents)
    except DataError as e:
        _fail(str(e))
    live = _live(run_dir, method)
    try:
        report = live.add(docs)
    except (LiveIndexError, DataError) as e:
        _fail(error_text(e))
    for name, r in report.items():
        if "refused" in r:
            typer.secho(f"{name}: not indexed: {r['refused']}", fg=typer.colors.YELLOW, err=True)
        else:
            per = r["seconds"] / max(r["documents"], 1) * 1000
            typer.echo(f"{name}: {r['documents']} documents in {r['seconds']:.2f} s ({per:.1f} ms each)"
                       + (f"; {r['sharing_a_docid']} share a docid" if r.get("sharing_a_docid") else ""))
    typer.echo(json.dumps(report, default=float))


@index_app.command("remove")
def index_remove(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    doc_ids: Annotated[list[str], typer.Argument(help="document ids (@FILE: one id per line)")],
) -> None:
    """Withdraw documents from every method and baseline of a run: they never appear in a result again."""
    from genir.live import LiveIndexError, read_removed_ids

    try:
        ids = read_removed_ids(doc_ids)
    except OSError as e:
        _fail(f"{e.filename}: {e.strerror}")
    live = _live(run_dir, baselines=())
    try:
        report = live.remove(ids)
    except LiveIndexError as e:
        _fail(str(e))
    typer.echo(json.dumps(report))


@index_app.command("status")
def index_status(run_dir: Annotated[Path, typer.Argument(help="a run folder")]) -> None:
    """The live corpus: documents added and removed since training, and what each method indexes."""
    live = _live(run_dir, baselines=())
    out = {"documents": len(live.corpus()), "added": len(live.state.added), "removed": len(live.state.removed),
           "version": live.state.version,
           "methods": {m: {"indexed": len(live.table(m)[0]), "pending": len(live.pending(m)),
                           "can_add": live.method(m).can_add} for m in live.methods}}
    typer.echo(json.dumps(out, indent=1))


@app.command()
def docids(
    dataset: Annotated[str, typer.Option(help="dataset name or folder")],
    scheme: Annotated[str, typer.Option(help="atomic | naive | semantic")] = "semantic",
    out: Annotated[Path, typer.Option(help="folder for docids.tsv + docids.json")] = Path("docids"),
    c: Annotated[int, typer.Option(help="semantic: children per node and leaf size")] = 32,
    data_dir: Annotated[str | None, typer.Option()] = None,
    dense_model: Annotated[str | None, typer.Option(help="encoder for semantic docids (default bundled)")] = None,
) -> None:
    """Assign docids to a corpus and save them as a plain folder (no training)."""
    from genir.data import load_dataset
    from genir.data.collection import DataError
    from genir.docids import atomic_docids, naive_docids, semantic_docids

    try:
        coll = load_dataset(dataset, data_dir)
    except DataError as e:
        _fail(str(e))
    ids = coll.doc_ids
    if scheme == "atomic":
        table = atomic_docids(ids)
    elif scheme == "naive":
        table = naive_docids(ids)
    elif scheme == "semantic":
        from genir.search.dense import load_sentence_encoder

        emb = load_sentence_encoder(dense_model).encode([d.full_text for d in coll.corpus.values()],
                                                        normalize_embeddings=True, show_progress_bar=True)
        table = semantic_docids(ids, emb, c=c)
    else:
        _fail(f"unknown scheme {scheme!r}: atomic, naive or semantic")
    table.save(out)
    typer.echo(json.dumps(table.stats(), indent=1))


@app.command()
def datasets(data_dir: Annotated[str | None, typer.Option()] = None) -> None:
    """Where each known BEIR dataset would be loaded from (no download)."""
    from genir.data.collection import DataError
    from genir.data.registry import BEIR_DATASETS, resolve_dataset

    for name in BEIR_DATASETS + ("cranfield", "cisi"):
        try:
            where = str(resolve_dataset(name, data_dir, download=False))
        except DataError:
            where = "(not local: fetched from the public BEIR archive on first use)"
        typer.echo(f"{name:18s} {where}")


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
