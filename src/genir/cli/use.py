"""genir evaluate | search | serve | index | docids | datasets: using what a run trained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from genir.cli.common import _SEARCH_SET, _fail, _live, _method_searcher, app, error_text, index_app


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


@app.command()
def search(
    method_dir: Annotated[Path, typer.Argument(help="a trained folder: a method's (RUN/NAME) or a baseline's "
                                               "(RUN/baselines/NAME), where it was made or copied anywhere")],
    query: Annotated[list[str], typer.Argument(help="query text(s)")],
    k: Annotated[int, typer.Option()] = 10,
    beam: Annotated[int | None, typer.Option(help="beam size (default: the run's)")] = None,
    dataset: Annotated[str | None, typer.Option(help="the corpus to encode for tied-atomic folders "
                                                "(default: the run's dataset)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help=_SEARCH_SET)] = None,
) -> None:
    """Search a trained folder (a method or a baseline) as its run did: prints doc ids and scores as JSON lines."""
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
    shared_encoders: Annotated[bool, typer.Option(help="methods reading queries with the same encoder encode "
                                                       "each query once (off: once per method)")] = True,
    set_: Annotated[list[str] | None, typer.Option("--set", help=_SEARCH_SET + " (e.g. search.encoder_precision=bf16)")
                    ] = None,
) -> None:
    """Serve a run over HTTP: a web page at /, GET/POST /search, GET /documents/{id}, GET /inspect,
    POST /documents and DELETE /documents/{id} (the live index), GET /health; OpenAPI docs at /docs."""
    from genir.serve import serve as serve_app
    from genir.settings import SettingsError

    if not 0 <= port <= 65535:
        _fail(f"--port: must be between 0 and 65535, got {port}")
    if beam is not None and beam < 1:
        _fail(f"--beam: must be at least 1, got {beam}")
    if max_batch < 1:
        _fail(f"--max-batch: must be at least 1, got {max_batch}")
    if (run_dir / "model").is_dir() and not (run_dir / "config.json").exists():  # one method folder
        method, run_dir = [run_dir.name], run_dir.parent
    baselines = [] if baseline == ["none"] else baseline
    index = _live(run_dir, method, beam, baselines, set_)
    for name in index.names:  # open every searcher now: the first request is not the one that waits, and a
        try:  # searcher that refuses a --set says so before the port opens
            index.searcher(name)
        except (ValueError, SettingsError) as e:
            _fail(error_text(e))
    typer.echo(f"serving {', '.join(index.names)} on http://{host}:{port}/ (API docs: /docs)")
    serve_app(index, host, port, max_batch, share_encoders=shared_encoders)


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
    from genir.data.collection import DataError
    from genir.live import LiveIndexError, read_removed_ids

    try:
        ids = read_removed_ids(doc_ids)
    except (OSError, DataError) as e:
        _fail(str(e) if isinstance(e, DataError) else f"{e.filename}: {e.strerror}")
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
    c: Annotated[int | None, typer.Option(help="semantic: children per node and leaf size [default: 32]")] = None,
    data_dir: Annotated[str | None, typer.Option()] = None,
    dense_model: Annotated[str | None, typer.Option(help="encoder for semantic docids (default bundled)")] = None,
) -> None:
    """Assign docids to a corpus and save them as a plain folder (no training)."""
    from genir.data import load_dataset
    from genir.data.collection import DataError
    from genir.docids import atomic_docids, naive_docids, semantic_docids

    if out.exists() and not out.is_dir():
        _fail(f"--out {out}: a file is there; docids are written as a folder")
    if scheme not in ("atomic", "naive", "semantic"):
        _fail(f"unknown scheme {scheme!r}: atomic, naive or semantic")
    if scheme != "semantic" and (c is not None or dense_model is not None):
        _fail(f"--c and --dense-model shape semantic docids; --scheme {scheme} reads neither")
    if c is not None and c < 2:
        _fail(f"--c {c}: a node needs at least 2 children")
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
        table = semantic_docids(ids, emb, c=32 if c is None else c)
    try:
        table.save(out)
    except OSError as e:
        _fail(f"{e.filename or out}: {e.strerror or e}")
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
