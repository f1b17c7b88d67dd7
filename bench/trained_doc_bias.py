"""Do documents that training queries judge crowd out the others on unseen queries? A diagnostic on a
``--holdout`` run folder: for the held-out queries, seen and unseen, the share of trained documents (judged
by a remaining training query) in the model's top 10 and top 100 against the dense encoder's, then the run
re-ranked by post-hoc logit adjustment (Menon et al., 2021, "Long-tail learning via logit adjustment"):
score - tau x temperature x log(n_d / 2), n_d the document's training examples (2 for a document with no
training query: its leading span and one random span), and with every trained document removed (an
oracle bound on what any such prior correction could give the unseen queries).

    python bench/trained_doc_bias.py bench_runs/j-hold --doc-embeddings bench_runs/teacher-scifact/doc_embeddings.npy
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a run folder made with --holdout")
    ap.add_argument("--method", default="tied-atomic")
    ap.add_argument("--doc-embeddings", type=Path, help="the dense encoder's document embeddings (.npy, in the "
                    "corpus order; default: the run folder's, encoded if missing)")
    ap.add_argument("--taus", type=float, nargs="+", default=[0, 0.25, 0.5, 1, 2])
    args = ap.parse_args()
    from genir.evaluation.metrics import evaluate
    from genir.evaluation.trec import read_run
    from genir.methods import read_settings
    from genir.search.base import Hit
    from genir.search.dense import DenseSearcher
    from genir.workspace import Workspace

    settings = read_settings(args.run)
    ws = Workspace(settings, args.run)
    held = ws.collection.qrels.get("holdout")
    if not held:
        raise SystemExit(f"{args.run}: not a --holdout run")
    examples = ws.examples()
    trained = {ws.doc_ids[d] for _, d, kind in examples.examples if kind == "retrieval"}
    n = Counter(ws.doc_ids[d] for _, d, _ in examples.examples)
    model_run = read_run(args.run / args.method / f"{args.method}.trec")
    emb = np.load(args.doc_embeddings) if args.doc_embeddings else ws.doc_embeddings()
    qids = sorted(held)
    dense = DenseSearcher(ws.docs, encoder=ws.dense_encoder(), doc_embeddings=emb, show_progress=False)
    dense_run = dense.batch_search({x: ws.collection.queries[x] for x in qids}, 100)

    def line(name: str, run: dict) -> str:
        m = evaluate({x: run[x] for x in qids}, held, subsets=ws.subsets)
        return f"| {name} | " + " | ".join(f"{m[k]['nDCG@10']:.3f}" for k in ("full", "seen", "unseen")) + \
            f" | {m['full']['R@100']:.3f} |"

    print(f"{len(trained)} of {len(ws.doc_ids)} documents judged by a training query\n")
    print("| ranking | queries | trained documents in the top 10 | in the top 100 |\n|---|---|---|---|")
    for name, run in (("dense encoder", dense_run), (args.method, model_run)):
        for sub in ("seen", "unseen"):
            qs = [x for x in qids if x in ws.subsets[sub]]
            share = [np.mean([np.mean([h.doc_id in trained for h in run[x][:k]]) for x in qs]) for k in (10, 100)]
            print(f"| {name} | {sub} ({len(qs)}) | {share[0]:.3f} | {share[1]:.3f} |")
    temperature = settings.tied.temperature
    print("\n| ranking | nDCG@10 full | seen | unseen | R@100 |\n|---|---|---|---|---|")
    print(line("dense encoder", dense_run))
    for tau in args.taus:
        adjusted = {x: sorted((Hit(h.doc_id, h.score - tau * temperature * np.log(n.get(h.doc_id, 2) / 2))
                               for h in model_run[x]), key=lambda h: -h.score) for x in qids}
        print(line(f"{args.method}, logit adjustment tau = {tau:g}", adjusted))
    print(line(f"{args.method}, trained documents removed (oracle)",
               {x: [h for h in model_run[x] if h.doc_id not in trained] for x in qids}))


if __name__ == "__main__":
    main()
