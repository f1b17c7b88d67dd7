"""Teacher scores for ``tied-atomic-distill`` with no model beyond genir's own: the dense encoder's cosine
plus a share of BM25, T(q, d) = cos(q, d) + alpha * BM25(q, d) / max_d' BM25(q, d'). At alpha = 0 the teacher
is the encoder itself, so a residual-form student (``tied.residual=true``), which starts as that encoder,
has nothing to learn; alpha > 0 asks its residual for what BM25 adds (the lexical matches the encoder
misses), in the encoder's own units, which is what Margin-MSE regresses.

alpha is chosen on held-out training queries (``--holdout``): the teacher's own ranking, by nDCG@10 on the
held-out queries. The test split is not read. The file covers every training query (the held-out ones too:
a ``--holdout`` run never trains on them), each with its judged documents and the union of the BM25 and
dense top ``--depth``.

    python bench/hybrid_teacher.py --dataset scifact --holdout 0.2 --out bench_runs/teacher-scifact
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--train-split", default="train")
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0, help="the held-out draw (genir's training.seed)")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0])
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from genir.evaluation.metrics import evaluate
    from genir.methods import make_settings
    from genir.search.base import Hit
    from genir.search.teacher import teacher_scores
    from genir.workspace import Workspace

    settings = make_settings({"data": {"dataset": args.dataset, "train_split": args.train_split,
                                       "holdout": args.holdout}, "training": {"seed": args.seed}})
    args.out.mkdir(parents=True, exist_ok=True)
    ws = Workspace(settings, args.out)
    coll = ws.collection
    train = {**coll.qrels[args.train_split], **coll.qrels["holdout"]}  # every training query
    qids = sorted(train)
    texts = [coll.queries[q] for q in qids]
    index = {d: i for i, d in enumerate(ws.doc_ids)}
    judged = [{index[d] for d in train[q] if d in index} for q in qids]

    # the queries are encoded once and BM25 runs once for every alpha: the alphas differ only in the sum
    embeddings = ws.dense_encoder().encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)

    def teacher(alphas: list[float], depth: int) -> list[dict[str, dict[str, float]]]:
        """Per alpha, the teacher's candidates: its own, BM25's and dense's top ``depth``, and the judged
        documents."""
        per_alpha = teacher_scores(ws.bm25(), embeddings, ws.doc_embeddings(), texts, alphas, depth, keep=judged)
        return [{q: {ws.doc_ids[i]: s for i, s in row.items()} for q, row in zip(qids, rows, strict=True)}
                for rows in per_alpha]

    held = coll.qrels["holdout"]
    rows = []
    for alpha, scores in zip(args.alphas, teacher(args.alphas, 100), strict=True):
        results = {q: [Hit(d, s) for d, s in sorted(scores[q].items(), key=lambda x: -x[1])[:100]] for q in held}
        m = evaluate(results, held, subsets=ws.subsets)
        rows.append({"alpha": alpha, **{k: {"nDCG@10": v["nDCG@10"], "R@100": v["R@100"], "n": v["n"]}
                                        for k, v in m.items()}})
        print(json.dumps(rows[-1]), flush=True)
    best = max(rows, key=lambda r: r["full"]["nDCG@10"])
    scores = teacher([best["alpha"]], args.depth)[0]
    path = args.out / f"teacher-alpha{best['alpha']:g}.tsv"
    with path.open("w", encoding="utf-8") as f:
        for q in qids:
            for d, s in sorted(scores[q].items(), key=lambda x: -x[1]):
                f.write(f"{q}\t{d}\t{s:.6f}\n")
    (args.out / "result.json").write_text(json.dumps({"dataset": args.dataset, "holdout": args.holdout,
                                                      "seed": args.seed, "rows": rows, "chosen": best["alpha"],
                                                      "file": str(path)}, indent=1), encoding="utf-8")
    lines = ["| alpha | held-out nDCG@10 full | seen | unseen | R@100 |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['alpha']:g} | {r['full']['nDCG@10']:.3f} | {r.get('seen', {}).get('nDCG@10', 0):.3f} "
                     f"| {r.get('unseen', {}).get('nDCG@10', 0):.3f} | {r['full']['R@100']:.3f} |")
    print("\n".join(lines) + f"\n\nchosen alpha {best['alpha']:g}: {path}")


if __name__ == "__main__":
    main()
