"""How much room GLEN's phase 2 has to move identifiers: the sharpness of the documents' identifier
distributions after phase 1, and how many identifiers phase 2 changed.

Usage (after `genir run --method glen`, which keeps `glen/phase1/model` and `glen/model`):

    python bench/glen_refinement.py --run-dir runs/scifact
    python bench/glen_refinement.py --run-dir runs/scifact --scales 1 0.2 0.051   # the softmax at other scales

``--scales``: the same statistics of softmax(s * d_t E^T) for each s (``glen.soft_scale`` / tau): how soft the
identifier r_t of Eq. 6 is at the start of phase 2 under each candidate, with its effective number of tokens
exp(entropy).

The pairwise loss (GLEN Eq. 5-6) reaches a document's identifier only through r_t = softmax(d_t E^T / tau) E;
when that softmax is already one-hot at tau = 1 (its top probability ~1, a large top-1 / top-2 logit
margin), r_t = e_{z_t} and its gradient vanishes, and tau < 1 only sharpens it further.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def sharpness(model, texts: list[str], max_length: int, batch_size: int = 128,
              scales: tuple[float, ...] = ()) -> dict[str, float]:
    top_p, margin = [], []
    soft: dict[float, tuple[list, list]] = {s: ([], []) for s in scales}
    model.eval()
    for s in range(0, len(texts), batch_size):
        with torch.inference_mode():
            mem, mask = model.encode_texts(texts[s: s + batch_size], max_length)
            hidden, _ = model.hidden_states(mem, mask, with_tokens=False)
            logits = model.vocab_logits(hidden).float()
        top2 = logits.topk(2, -1).values
        top_p.append(torch.softmax(logits, -1).amax(-1).flatten())
        margin.append((top2[..., 0] - top2[..., 1]).flatten())
        for scale, (tops, entropies) in soft.items():
            logp = torch.log_softmax(logits * scale, -1)
            tops.append(logp.amax(-1).exp().flatten())
            entropies.append(-(logp.exp() * logp).sum(-1).flatten())
    p, m = torch.cat(top_p).numpy(), torch.cat(margin).numpy()
    out = {"top_probability_mean": float(p.mean()), "top_probability_median": float(np.median(p)),
           "share_above_0.99": float((p > 0.99).mean()), "logit_margin_median": float(np.median(m))}
    for scale, (tops, entropies) in soft.items():
        h = torch.cat(entropies).numpy()
        out[f"scale {scale:g}"] = {"top_probability_mean": float(torch.cat(tops).mean()),
                                   "effective_tokens_median": float(np.exp(np.median(h)))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, type=Path)
    ap.add_argument("--docs", type=int, default=2000, help="documents sampled (corpus order)")
    ap.add_argument("--scales", type=float, nargs="+", default=[], help="logit scales s (soft_scale / tau)")
    ap.add_argument("--phase1-only", action="store_true", help="only the phase-1 model (phase 2 not trained yet)")
    args = ap.parse_args()

    from genir.docids import DocIdTable
    from genir.methods import read_settings
    from genir.models import DocidSeq2Seq
    from genir.workspace import Workspace

    settings = read_settings(args.run_dir)
    ws = Workspace(settings, out=args.run_dir)
    texts = ws.lead_texts(ws.docs[: args.docs])
    out = {}
    for name, folder in (("after phase 1", args.run_dir / "glen" / "phase1" / "model"),
                         ("after phase 2", args.run_dir / "glen" / "model"))[: 1 if args.phase1_only else 2]:
        out[name] = sharpness(DocidSeq2Seq.load(folder), texts, settings.model.doc_max_length,
                              scales=tuple(args.scales))
    if args.phase1_only:
        print(json.dumps(out, indent=1))
        return
    before = np.load(args.run_dir / "glen" / "identifiers_phase1.npy")
    after = DocIdTable.load(args.run_dir / "glen" / "docids").codes
    out["identifiers changed by phase 2"] = int((before != after).any(1).sum())
    out["documents"] = len(after)
    train = json.loads((args.run_dir / "glen" / "train.json").read_text())
    out["phase 2 steps"] = len(train["history"])
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
