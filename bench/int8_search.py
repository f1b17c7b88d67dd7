"""fp32 against int8 search-time encoders (``search.encoder_precision``) on a trained run, in one process.

Usage:

    python bench/int8_search.py --run-dir runs/scifact --rounds 3

Every method folder of the run and dense search over the run's document embeddings (the bundled MiniLM, or
``dense.model``) answer the run's evaluated queries (its test split, or its held-out queries) in fp32 and in
int8; nDCG@10 of each, and queries/s (median of --rounds, fp32 and int8 interleaved so machine noise hits
both alike).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, type=Path)
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
    queries = ws.test_queries
    emb = np.load(args.run_dir / "doc_embeddings.npy")
    systems = {"dense": {"fp32": DenseSearcher(ws.docs, model=settings.dense.model, doc_embeddings=emb)}}
    systems["dense"]["int8"] = DenseSearcher(ws.docs, encoder=systems["dense"]["fp32"].encoder,
                                             doc_embeddings=emb).int8_queries()
    for folder in sorted(p.parent.parent for p in args.run_dir.glob("*/model/genir_model.json")):
        systems[folder.name] = {p: Retriever.load(folder, docs=ws.docs, overrides={"search.encoder_precision": p})
                                .searcher for p in ("fp32", "int8")}
    rows = []
    for name, pair in systems.items():
        times: dict[str, list[float]] = {"fp32": [], "int8": []}
        ndcg = {}
        for _ in range(args.rounds):
            for precision, searcher in pair.items():
                start = time.perf_counter()
                results = searcher.batch_search(queries, args.k)
                times[precision].append(time.perf_counter() - start)
                ndcg[precision] = evaluate(results, ws.qrels)["full"]["nDCG@10"]
        qps = {p: len(queries) / statistics.median(t) for p, t in times.items()}
        rows.append((name, ndcg["fp32"], ndcg["int8"], qps["fp32"], qps["int8"]))
        print(f"{name}: nDCG@10 fp32 {ndcg['fp32']:.4f} int8 {ndcg['int8']:.4f}; queries/s fp32 {qps['fp32']:.1f} "
              f"int8 {qps['int8']:.1f}", flush=True)
    print(f"\n{len(queries)} queries ({ws.test_split}), k {args.k}, beam as the run\n")
    print("| system | nDCG@10 fp32 | nDCG@10 int8 | difference | queries/s fp32 | queries/s int8 | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for name, a, b, qa, qb in rows:
        print(f"| {name} | {a:.4f} | {b:.4f} | {b - a:+.4f} | {qa:.1f} | {qb:.1f} | {qb / qa:.2f}x |")


if __name__ == "__main__":
    main()
