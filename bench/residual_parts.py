"""Where does Tied-Atomic's residual help and hurt? Scale the learned residual of queries and documents apart.

A trained residual-form Tied-Atomic model (``tied.residual=true``) gives every text the vector s + r: the
encoder's sentence embedding s and the learned residual r. This encodes a run folder's corpus and test
queries once, then ranks with (s_q + a_q r_q) . (s_d + a_d r_d) over a grid of (a_q, a_d), and reports
nDCG@10 and R@100 on the run's subsets (full / seen / unseen). a_q = a_d = 1 is the trained model, 0 / 0 the
encoder's own dense ranking, a_q = a_d = a the search setting ``tied.residual_scale=a``.

    python bench/residual_parts.py runs/scifact-tune --scales 0 0.5 1

Read it on held-out training queries (a run made with ``--holdout``): it is a diagnostic, and choosing
on it is choosing on whatever split the run folder evaluated.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm


@torch.inference_mode()
def parts(model, texts: list[str], max_length: int, batch: int = 64, desc: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(sentence embeddings s, residuals r) of ``texts``: the model's text vector is s + r."""
    s_out, r_out = [], []
    for i in tqdm(range(0, len(texts), batch), desc=desc, leave=False):
        memory, mask = model.encode_texts(texts[i: i + batch], max_length)
        s = model.sentence_vector(memory, mask)
        s_out.append(s.float().numpy())
        r_out.append((model.first_hidden(memory, mask) - s).float().numpy())
    return np.concatenate(s_out), np.concatenate(r_out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a run folder with a trained residual-form tied-atomic")
    ap.add_argument("--method", default="tied-atomic")
    ap.add_argument("--scales", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    ap.add_argument("--doc-max-length", type=int, help="encode documents at this many tokens instead of the "
                    "model's model.doc_max_length (a_d = 0: the encoder's dense ranking at that length)")
    ap.add_argument("--out", type=Path, help="a JSON file for the table (default: RUN/residual_parts-LENGTH.json)")
    args = ap.parse_args()

    from genir.evaluation.metrics import evaluate
    from genir.methods import read_settings
    from genir.methods.tied import TiedSeq2Seq
    from genir.search.base import Hit
    from genir.workspace import Workspace

    settings = read_settings(args.run)
    ws = Workspace(settings, args.run)
    model = TiedSeq2Seq.load(args.run / args.method / "model").eval()
    if not model.tied_residual:
        raise SystemExit(f"{args.run / args.method}: not the residual form (tied.residual=true)")
    qids = list(ws.test_queries)
    doc_length = args.doc_max_length or model.config.doc_max_length
    s_d, r_d = parts(model, [d.full_text for d in ws.docs], doc_length, desc="documents")
    s_q, r_q = parts(model, model.query_texts([ws.test_queries[q] for q in qids]), model.config.query_max_length,
                     desc="queries")
    doc_ids = [d.id for d in ws.docs]
    rows = []
    for a_q in args.scales:
        for a_d in args.scales:
            scores = torch.from_numpy((s_q + a_q * r_q) @ (s_d + a_d * r_d).T)
            top = torch.topk(scores, min(100, len(doc_ids)), dim=1)
            results = {q: [Hit(doc_ids[j], float(v)) for j, v in zip(top.indices[i].tolist(),
                                                                       top.values[i].tolist(), strict=True)]
                       for i, q in enumerate(qids)}
            metrics = evaluate(results, ws.qrels, subsets=ws.subsets)
            rows.append({"a_q": a_q, "a_d": a_d, **{f"{sub} {m}": metrics[sub][m] for sub in metrics
                                                    for m in ("nDCG@10", "R@100")}})
    subsets = ["full", *ws.subsets]
    head = "| a_q | a_d | " + " | ".join(f"{s} nDCG@10" for s in subsets) + " | full R@100 |"
    lines = [head, "|" + "---|" * (3 + len(subsets))]
    lines += [f"| {r['a_q']:g} | {r['a_d']:g} | " + " | ".join(f"{r[f'{s} nDCG@10']:.3f}" for s in subsets)
              + f" | {r['full R@100']:.3f} |" for r in rows]
    print(f"{args.run}: {len(qids)} queries, documents at {doc_length} tokens")
    print("\n".join(lines))
    (args.out or args.run / f"residual_parts-{doc_length}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
