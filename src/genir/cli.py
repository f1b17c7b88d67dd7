"""The genir command line: run | transfer | evaluate | search | serve | docids | datasets."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="genir: generative retrieval, trained, searched and evaluated beside BM25 and dense.")


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _load_config_file(path: Path) -> dict:
    if not path.exists():
        _fail(f"{path}: config file not found")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - report any parse error with the file name
        _fail(f"{path}: cannot parse config ({e})")
    if not isinstance(data, dict):
        _fail(f"{path}: the config must be a mapping of RunConfig keys")
    return data


def _parse_setting(key: str, value: str):
    """A --set value typed by its RunConfig field (bool, int, float, str, optional, list)."""
    from dataclasses import fields

    from genir.pipeline import RunConfig

    types = {f.name: str(f.type) for f in fields(RunConfig)}
    if key not in types:
        _fail(f"--set {key}: unknown setting; known: {', '.join(sorted(types))}")
    kind = types[key]
    if value.lower() in ("none", "null") and "None" in kind:
        return None
    try:
        if kind.startswith("bool"):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("list"):
            return [v for v in value.split(",") if v]
    except ValueError:
        _fail(f"--set {key}={value}: expected a {kind.split(' ')[0]}")
    return value


@app.command()
def run(
    config: Annotated[Path | None, typer.Option(help="YAML or JSON file of run settings; flags override it")] = None,
    dataset: Annotated[str | None, typer.Option(help="dataset name (scifact, ...) or BEIR-layout folder")] = None,
    data_dir: Annotated[str | None, typer.Option(help="folder holding datasets by name (checked first)")] = None,
    qrels_dir: Annotated[str | None, typer.Option(help="qrels folder inside the dataset (graded variants)")] = None,
    train_split: Annotated[str | None, typer.Option(help="qrels split used for training queries")] = None,
    test_split: Annotated[str | None, typer.Option(help="qrels split evaluated")] = None,
    method: Annotated[list[str] | None, typer.Option(help="generative method(s); repeat the flag")] = None,
    baseline: Annotated[list[str] | None, typer.Option(help="bm25, dense, dense-trained; repeat")] = None,
    no_baselines: Annotated[bool, typer.Option(help="run no baseline")] = False,
    no_methods: Annotated[bool, typer.Option(help="run the baselines only")] = False,
    backbone: Annotated[str | None, typer.Option(help="'minilm' (bundled) or any HF model name or path")] = None,
    encoder: Annotated[str | None, typer.Option(help="frozen (cached states) or full (fine-tune)")] = None,
    epochs: Annotated[float | None, typer.Option(help="training epochs over the indexing + retrieval data")] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    lr: Annotated[float | None, typer.Option()] = None,
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
        help="tied-atomic-distill: teacher scores, TSV query_id<TAB>doc_id<TAB>score or a TREC run")] = None,
    out: Annotated[str | None, typer.Option(help="report folder (a second run with it resumes)")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help=(
        "any run setting as KEY=VALUE, e.g. --set genret_reassign=false --set genret_codes=256; repeat"))] = None,
) -> None:
    """Train, index, search and evaluate; write report.md, report.json, run files and plots."""
    from genir.data.collection import DataError
    from genir.pipeline import RunConfig
    from genir.pipeline import run as run_pipeline

    settings = _load_config_file(config) if config else {}
    flags = {"dataset": dataset, "data_dir": data_dir, "qrels_dir": qrels_dir, "train_split": train_split,
             "test_split": test_split, "methods": method or None, "baselines": baseline or None,
             "backbone": backbone, "encoder": encoder, "epochs": epochs, "batch_size": batch_size, "lr": lr,
             "beam": beam, "semantic_c": semantic_c, "pseudo_queries": pseudo_queries, "holdout": holdout,
             "max_test_queries": max_test_queries, "out": out, "seed": seed, "new_docs": new_docs,
             "tied_mode": tied_mode, "teacher_scores": teacher_scores}
    settings.update({k: v for k, v in flags.items() if v is not None})
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--set {item!r}: expected KEY=VALUE")
        settings[key.strip()] = _parse_setting(key.strip(), value.strip())
    if no_baselines:
        settings["baselines"] = []
    if no_methods:
        settings["methods"] = []
    if settings.get("encoder", "frozen") not in ("frozen", "full"):
        _fail("--encoder must be 'frozen' or 'full'")
    try:
        cfg = RunConfig.from_dict(settings)
        from genir.methods import get_method

        for m in cfg.methods:
            get_method(m)
        report = run_pipeline(cfg)
    except (DataError, KeyError, ValueError) as e:
        _fail(str(e).strip("'\""))
    out_dir = Path(cfg.out or f"runs/{report['dataset']}")
    typer.echo((out_dir / "report.md").read_text())
    typer.secho(f"report: {out_dir / 'report.md'}", fg=typer.colors.GREEN)


def _transferable(name: str) -> bool:
    from genir.methods import METHODS

    return name in METHODS and METHODS[name].index_corpus is not None


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
) -> None:
    """Zero-shot: models trained in a run folder index another corpus without retraining and search it."""
    from genir.data.collection import DataError
    from genir.pipeline import RunConfig
    from genir.pipeline import transfer as run_transfer

    config = source / "config.json"
    if not config.exists():
        _fail(f"{source}: not a genir run folder (no config.json)")
    settings = json.loads(config.read_text())
    settings.update({"dataset": dataset, "data_dir": data_dir, "train_split": None, "test_split": test_split,
                     "qrels_dir": qrels_dir or "qrels", "holdout": 0.0, "new_docs": 0.0, "max_test_queries": None,
                     "methods": method or [m for m in settings.get("methods", []) if _transferable(m)],
                     "baselines": [b for b in (baseline if baseline is not None else ["bm25", "dense"])],
                     "out": out or f"runs/{Path(dataset).name}-from-{source.name}"})
    if beam:
        settings["beam"] = beam
    try:
        cfg = RunConfig.from_dict(settings)
        report = run_transfer(source, cfg)
    except (DataError, KeyError, ValueError) as e:
        _fail(str(e).strip("'\""))
    typer.echo((Path(cfg.out) / "report.md").read_text())
    typer.secho(f"report: {Path(cfg.out) / 'report.md'} ({len(report['systems'])} systems)", fg=typer.colors.GREEN)


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
        _fail(str(e))
    subsets = {}
    if train_split and train_split in coll.qrels and train_split != split:
        seen, unseen = seen_unseen(coll.qrels[train_split], qrels)
        subsets = {"seen": seen, "unseen": unseen}
    table = evaluate_run(results, qrels, subsets=subsets)
    typer.echo(json.dumps(table, indent=1))


def _method_searcher(method_dir: Path, beam: int, dataset: str | None):
    """The searcher of a trained method folder, the way its recipe searches (see open_method_folder)."""
    from genir.search.folders import open_method_folder

    try:
        docs = None
        if dataset:
            from genir.data import load_dataset

            docs = list(load_dataset(dataset).corpus.values())
        return open_method_folder(method_dir, beam, docs)
    except ValueError as e:
        _fail(str(e).replace("give the dataset", "give --dataset"))


@app.command()
def search(
    method_dir: Annotated[Path, typer.Argument(help="a method folder of a run (holds model/ and docids/)")],
    query: Annotated[list[str], typer.Argument(help="query text(s)")],
    k: Annotated[int, typer.Option()] = 10,
    beam: Annotated[int, typer.Option()] = 100,
    dataset: Annotated[str | None, typer.Option(help="the corpus, for tied-atomic folders")] = None,
) -> None:
    """Search a trained generative retriever: prints doc ids and scores as JSON lines."""
    searcher = _method_searcher(method_dir, beam, dataset)
    results = searcher.batch_search({str(i): q for i, q in enumerate(query)}, k)
    for i, q in enumerate(query):
        typer.echo(json.dumps({"query": q, "hits": [[h.doc_id, round(h.score, 4)] for h in results[str(i)]]}))


@app.command()
def serve(
    method_dir: Annotated[Path, typer.Argument(help="a method folder of a run (model/ + docids/), or 'bm25'")],
    dataset: Annotated[str | None, typer.Option(help="dataset (needed for bm25 and tied-atomic)")] = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    beam: Annotated[int, typer.Option()] = 100,
) -> None:
    """Serve a searcher over HTTP: GET /search?q=...&k=10, POST /search, GET /health."""
    from genir.serve import make_server

    if str(method_dir) == "bm25":
        from genir.data import load_dataset
        from genir.search.bm25 import BM25Searcher

        if not dataset:
            _fail("bm25 needs --dataset")
        searcher = BM25Searcher(list(load_dataset(dataset).corpus.values()))
    else:
        searcher = _method_searcher(method_dir, beam, dataset)
    server = make_server(searcher, host, port)
    typer.echo(f"serving {searcher.name} on http://{host}:{server.server_port}/search")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.shutdown()


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
