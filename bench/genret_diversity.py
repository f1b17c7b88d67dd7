"""GenRet Sec. 5.3 / Fig. 4 (left): docid diversity d at the first step, with and without docid
re-assignment and diverse codebook initialisation.

Trains only progressive step 1 (the step the paper's figure shows) for each setting on the same data and
prints d, codes used and the largest code's share; writes a frequency plot per setting.

    GENIR_DATASETS=../shared/datasets python bench/genret_diversity.py --dataset scifact --epochs 30
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from genir.docids.balance import diversity, largest_share
from genir.methods import make_settings
from genir.methods.genret import GenRetData, ProgressiveTrainer, resolved
from genir.methods.genret.model import CodebookSeq2Seq
from genir.models import ModelConfig
from genir.workspace import Workspace

SETTINGS = {
    "genret": {},
    "w/o re-assignment": {"reassign": False},
    "w/o diverse init": {"diverse_init": False},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--epochs", type=float, default=30)
    ap.add_argument("--warmup-epochs", type=float, default=3)
    ap.add_argument("--out", default="runs/bench-genret-diversity")
    ap.add_argument("--only", nargs="*", help="settings to run (default: all)")
    ap.add_argument("--set", nargs="*", default=[], help="extra GenRetConfig KEY=VALUE")
    args = ap.parse_args()
    out = Path(args.out)
    run = Workspace(make_settings({"data": {"dataset": args.dataset}, "methods": [], "baselines": []}), out=out)
    examples = run.examples()
    queries: dict[int, list[int]] = {d: [] for d in examples.doc_text}
    for t, d, _ in examples.examples:
        if t != examples.doc_text.get(d):
            queries[d].append(t)
    results = {}
    for name, overrides in SETTINGS.items():
        if args.only and name not in args.only:
            continue
        extra = dict(kv.split("=", 1) for kv in args.set)
        gcfg = resolved(run, run.settings.genret)
        for k, v in {**overrides, "epochs": args.epochs, "warmup_epochs": args.warmup_epochs, **extra}.items():
            cur = getattr(gcfg, k)
            setattr(gcfg, k, v if not isinstance(v, str) else type(cur)(v) if cur is not None else v)
        torch.manual_seed(0)
        model = CodebookSeq2Seq(ModelConfig(n_codes=gcfg.codes, decoder_dim=256, decoder_ff=512,
                                            max_docid_length=gcfg.docid_length(len(run.doc_ids))))
        model.freeze_encoder(True)
        data = GenRetData(run.text_inputs(model), examples.doc_text, queries, 0)
        folder = out / name.replace(" ", "_").replace("/", "")
        trainer = ProgressiveTrainer(model, data, len(run.doc_ids), gcfg, folder)
        start = time.perf_counter()
        trainer.train(steps=1)
        col = trainer.codes[data.docs, 0].numpy()
        results[name] = {"diversity": diversity(col, gcfg.codes), "codes_used": int(len(np.unique(col))),
                         "largest_share": largest_share(col), "seconds": time.perf_counter() - start,
                         "frequencies": sorted(np.bincount(col, minlength=gcfg.codes).tolist(), reverse=True)}
        print(f"{name}: d = {results[name]['diversity']:.3f}, {results[name]['codes_used']} codes used, "
              f"largest share {results[name]['largest_share']:.1%}", flush=True)
    (out / "diversity.json").write_text(json.dumps(results, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, r in results.items():
        ax.plot(np.arange(1, len(r["frequencies"]) + 1), r["frequencies"], label=f"{name} (d = {r['diversity']:.2f})")
    ax.set_xlabel("docid at step 1, by frequency")
    ax.set_ylabel("documents")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "diversity.png", dpi=110)
    print(f"plot: {out / 'diversity.png'}")


if __name__ == "__main__":
    main()
