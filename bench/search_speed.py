"""Search speed in one process: generative beam search vs dense search with the same encoder vs BM25.

Usage (after `genir run`, which leaves trained methods and document embeddings in its report folder):

    python bench/search_speed.py --run-dir runs/scifact --method dsi-semantic --beams 10 100 \
        --decoder-precision fp32 bf16 [--encoder-precision bf16] [--prefix-beams 10 20]

Every searcher answers the same test queries; each measurement is repeated (--rounds, interleaved so
machine noise hits all alike) and the median is kept. Ratios are queries/s over dense queries/s. Each row's
nDCG@10 is computed from its last round's ranking (full, and seen / unseen where the run has training
queries); a bf16-decoder row or a narrower prefix beam also counts the queries whose top 10 differ from its
plain row. The queries are the ones the run evaluated: its held-out training queries for a `--holdout` run.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, type=Path)
    ap.add_argument("--method", action="append", help="method folder(s) in the run dir (default: all)")
    ap.add_argument("--beams", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--latency-queries", type=int, default=100,
                    help="single-query latency (p50 / p99) over this many queries, one search call each")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--runs", type=Path, help="also write each searcher's last ranking here as a TREC run file "
                    "(to compare the rankings of two commits: `cmp`)")
    ap.add_argument("--decoder-precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                    help="each generative method at each beam in these decoder precisions (search.decoder_precision)")
    ap.add_argument("--encoder-precision", default="fp32", choices=["fp32", "int8", "bf16"],
                    help="every searcher's query encoder, dense included (search.encoder_precision)")
    ap.add_argument("--prefix-beams", type=int, nargs="+", default=[],
                    help="each generative method at each beam also with these search.prefix_beam values (those "
                         "under the beam)")
    ap.add_argument("--glen-reference", action="store_true",
                    help="also time GLEN folders decoding per beam row (restricted outputs, and the whole vocabulary)")
    args = ap.parse_args()

    from genir.docids import DocIdTable
    from genir.evaluation.metrics import evaluate
    from genir.methods import get_method, read_settings
    from genir.methods.glen.search import LexicalSearcher
    from genir.models import DocidSeq2Seq
    from genir.retriever import Retriever
    from genir.search.bm25 import BM25Searcher
    from genir.search.dense import DenseSearcher
    from genir.workspace import Workspace

    settings = read_settings(args.run_dir)
    ws = Workspace(settings, args.run_dir)  # the queries the run evaluated (held-out ones for --holdout)
    queries, qrels, docs = ws.test_queries, ws.qrels, ws.docs
    emb = np.load(args.run_dir / "doc_embeddings.npy")
    dense = DenseSearcher(docs, model=settings.dense.model, doc_embeddings=emb, batch_size=args.batch_size)
    searchers = {"bm25": BM25Searcher(docs), "dense": dense.queries_in(args.encoder_precision)}
    methods = args.method or [p.parent.parent.name for p in args.run_dir.glob("*/model/genir_model.json")]
    for m in methods:
        for beam in args.beams:
            for precision in args.decoder_precision:
                for prefix_beam in [None, *[p for p in args.prefix_beams if p < beam]]:
                    tag = ("" if precision == "fp32" else f"-{precision}") + (f"-p{prefix_beam}" if prefix_beam else "")
                    narrow = {"search.prefix_beam": prefix_beam} if prefix_beam else {}
                    searchers[f"{m}@beam{beam}{tag}"] = Retriever.load(args.run_dir / m, docs=docs,
                                                                       beam=beam if get_method(m).decodes else None,
                                                                       overrides={
                        "search.batch_size": args.batch_size, "search.decoder_precision": precision,
                        "search.encoder_precision": args.encoder_precision, **narrow}).searcher
            folder = args.run_dir / m
            if args.glen_reference and (folder / "identifier_logits.npy").exists():
                # GLEN references: every beam row decodes (restricted output layer, then the whole vocabulary)
                table, logits = DocIdTable.load(folder / "docids"), np.load(folder / "identifier_logits.npy")
                for label, restrict in (("per-beam", True), ("per-beam-full-vocab", False)):
                    searchers[f"{m}@beam{beam}-{label}"] = LexicalSearcher(
                        DocidSeq2Seq.load(folder / "model"), table, logits, beam=beam, batch_size=args.batch_size,
                        tie_break=settings.glen.tie_break, shared_steps=False, restrict=restrict)
    for s in searchers.values():  # warm-up: first calls allocate and load lazily
        s.batch_search(dict(list(queries.items())[:8]), args.k)
    times: dict[str, list[float]] = {n: [] for n in searchers}
    runs = {}
    for _ in range(args.rounds):
        for name, s in searchers.items():
            start = time.perf_counter()
            runs[name] = s.batch_search(queries, args.k)
            times[name].append(time.perf_counter() - start)
    if args.runs:
        from genir.evaluation.trec import write_run

        args.runs.mkdir(parents=True, exist_ok=True)
        for name, r in runs.items():
            write_run(r, args.runs / f"{name}.trec", name)
    subsets = {k: v for k, v in ws.subsets.items() if k in ("seen", "unseen")}
    metrics = {n: evaluate(r, qrels, subsets=subsets) for n, r in runs.items()}
    ndcg = {n: m["full"]["nDCG@10"] for n, m in metrics.items()}
    parts = {n: " / ".join(f"{m[k]['nDCG@10']:.4f}" for k in subsets) for n, m in metrics.items()}
    def varied(name: str) -> str:  # the row a variant varies: a prefix beam's searcher without it, bf16's fp32
        base = re.sub(r"-p\d+$", "", name)
        return base if base != name else name.removesuffix("-bf16")

    plain = {n: varied(n) for n in runs if varied(n) != n}
    top10_changed = {n: sum([h.doc_id for h in runs[n][q][:10]] != [h.doc_id for h in runs[p][q][:10]]
                            for q in queries) for n, p in plain.items()}
    qps = {n: len(queries) / statistics.median(t) for n, t in times.items()}
    alone = list(queries.values())[: args.latency_queries]
    latency: dict[str, list[float]] = {n: [] for n in searchers}
    for text in alone:  # one query per call, searchers interleaved
        for name, s in searchers.items():
            start = time.perf_counter()
            s.search(text, args.k)
            latency[name].append(1000 * (time.perf_counter() - start))
    p50 = {n: float(np.percentile(v, 50)) for n, v in latency.items()}
    p99 = {n: float(np.percentile(v, 99)) for n, v in latency.items()}
    print(f"{len(queries)} queries, {len(docs)} documents, torch threads {torch.get_num_threads()}, "
          f"encoders {args.encoder_precision}, batch {args.batch_size}, median of {args.rounds} rounds; "
          f"latency over {len(alone)} single queries")
    print(f"{'searcher':28s} {'queries/s':>10s} {'vs dense':>9s} {'vs BM25':>8s} {'p50 ms':>8s} {'p99 ms':>8s} "
          f"{'nDCG@10':>8s} {'top-10 changed':>15s}  {' / '.join(subsets)}")
    for n, v in qps.items():
        changed = str(top10_changed[n]) if n in top10_changed else "-"
        print(f"{n:28s} {v:10.1f} {v / qps['dense']:8.2f}x {v / qps['bm25']:7.3f}x {p50[n]:8.1f} {p99[n]:8.1f} "
              f"{ndcg[n]:8.4f} {changed:>15s}  {parts[n]}")
    if args.json:
        args.json.write_text(json.dumps({"queries": len(queries), "qps": qps, "p50_ms": p50, "p99_ms": p99,
                                         "ratio_to_dense": {n: v / qps["dense"] for n, v in qps.items()},
                                         "metrics": metrics, "ndcg10": ndcg, "top10_changed": top10_changed},
                                        indent=1))


if __name__ == "__main__":
    main()
