"""Search-time encoders in fp32 against int8 and bf16 (``search.encoder_precision``) on a trained run, in one
process.

Usage:

    python bench/encoder_precision.py --run-dir runs/scifact --precision int8 bf16 --rounds 3
    python bench/encoder_precision.py --run-dir runs/scifact-noq --split train   # queries it never trained on

Every method folder of the run and dense search over the run's document embeddings (the bundled MiniLM, or
``dense.model``) answer queries in fp32 and in each precision asked for: the run's evaluated queries (its test
split, or its held-out queries), or those of ``--split`` (refused when the run trained on them). nDCG@10 of
each, how many queries' top 10 changed against fp32, and queries/s (median of --rounds, the precisions
interleaved so that machine noise hits them alike).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, type=Path)
    ap.add_argument("--precision", nargs="+", default=["int8", "bf16"], choices=["int8", "bf16"])
    ap.add_argument("--split", help="evaluate on this split's queries and judgements (not one the run trained on)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--k", type=int, default=100)
    args = ap.parse_args()

    from genir.evaluation.metrics import evaluate
    from genir.methods import read_settings
    from genir.retriever import Retriever
    from genir.search.dense import DenseSearcher
    from genir.workspace import Workspace

    settings = read_settings(args.run_dir)
    ws = Workspace(settings, args.run_dir)
    queries, qrels, split = ws.test_queries, ws.qrels, ws.test_split
    if args.split:
        if args.split == settings.data.train_split:
            sys.exit(f"{args.run_dir} trained on the {args.split!r} queries: choose a split it never saw")
        split = args.split
        qrels = ws.collection.qrels_for(split)
        queries = {q: t for q, t in ws.collection.split_queries(split).items() if q in qrels}
    precisions = ["fp32", *args.precision]
    emb = np.load(args.run_dir / "doc_embeddings.npy")
    dense = DenseSearcher(ws.docs, model=settings.dense.model, doc_embeddings=emb)
    systems = {"dense": {p: DenseSearcher(ws.docs, encoder=dense.encoder, doc_embeddings=emb).queries_in(p)
                         for p in precisions}}
    for folder in sorted(p.parent.parent for p in args.run_dir.glob("*/model/genir_model.json")):
        systems[folder.name] = {p: Retriever.load(folder, docs=ws.docs, overrides={"search.encoder_precision": p})
                                .searcher for p in precisions}
    rows = []
    for name, searchers in systems.items():
        times: dict[str, list[float]] = {p: [] for p in precisions}
        ndcg, top10 = {}, {}
        for _ in range(args.rounds):
            for precision, searcher in searchers.items():
                start = time.perf_counter()
                results = searcher.batch_search(queries, args.k)
                times[precision].append(time.perf_counter() - start)
                ndcg[precision] = evaluate(results, qrels)["full"]["nDCG@10"]
                top10[precision] = {q: [h.doc_id for h in hits[:10]] for q, hits in results.items()}
        qps = {p: len(queries) / statistics.median(t) for p, t in times.items()}
        for p in args.precision:
            changed = sum(top10[p][q] != top10["fp32"][q] for q in top10["fp32"])
            rows.append((name, p, ndcg["fp32"], ndcg[p], changed, qps["fp32"], qps[p]))
            print(f"{name} {p}: nDCG@10 fp32 {ndcg['fp32']:.4f} {p} {ndcg[p]:.4f}; top 10 changed for {changed}; "
                  f"queries/s fp32 {qps['fp32']:.1f} {p} {qps[p]:.1f}", flush=True)
    print(f"\n{len(queries)} queries ({split}), k {args.k}, beam as the run\n")
    print("| system | precision | nDCG@10 fp32 | nDCG@10 | difference | top 10 changed | queries/s fp32 | queries/s | "
          "speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, p, a, b, changed, qa, qb in rows:
        print(f"| {name} | {p} | {a:.4f} | {b:.4f} | {b - a:+.4f} | {changed} of {len(queries)} | {qa:.1f} | {qb:.1f} "
              f"| {qb / qa:.2f}x |")


if __name__ == "__main__":
    main()
