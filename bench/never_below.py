"""Never start below the encoder: Tied-Atomic untrained and trained, in its plain form (the text vector is the
first decoder state) and its residual form (``tied.residual``: the encoder's sentence embedding plus a
learned residual), on a collection searched with pseudo-queries only (``--train-split ''``), beside BM25 and
dense zero-shot.

    python bench/never_below.py --dataset cisi --out bench_runs/never-below-cisi --set training.epochs=10
    python bench/never_below.py --dataset scifact --out bench_runs/never-below-scifact --set training.epochs=5

The untrained rows are the model as built (seeded), its vectors over the corpus, no training step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--set", nargs="*", default=[])
    ap.add_argument("--residual-set", nargs="*", default=[], help="--set values of the residual form only "
                    "(e.g. tied.temperature=0.05: its scores are cosines at the start)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    rows = []
    from genir.evaluation.metrics import evaluate
    from genir.methods.tied import TiedSeq2Seq
    from genir.methods.tied.search import TiedAtomicIndex, TiedAtomicSearcher
    from genir.workspace import Workspace

    for residual in (False, True):
        run = out / ("residual" if residual else "plain")
        cmd = [sys.executable, "-m", "genir.cli", "run", "--dataset", args.dataset, "--train-split", "",
               "--method", "tied-atomic", "--baseline", "bm25", "--baseline", "dense", "--out", str(run),
               "--set", f"tied.residual={str(residual).lower()}"]
        for s in args.set + (args.residual_set if residual else []):
            cmd += ["--set", s]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        report = json.loads((run / "report.json").read_text())
        systems = {s["name"]: s for s in report["systems"]}
        if not rows:
            rows += [(name, "-", systems[name]["metrics"]["full"]) for name in ("bm25", "dense")]
        # untrained: the same recipe's model, as built before its first step
        from genir.methods import read_settings

        settings = read_settings(run)
        ws = Workspace(settings, run)
        import torch

        from genir.methods import get_method
        from genir.methods.base import model_config

        method = get_method("tied-atomic")
        torch.manual_seed(settings.training.seed)
        model = TiedSeq2Seq(model_config(ws, 1, 1, method.model_extra(settings.group("tied")))).eval()
        searcher = TiedAtomicSearcher(model, TiedAtomicIndex(model.tied_dim), mode="dense")
        searcher.add_documents(ws.docs)
        untrained = evaluate(searcher.batch_search(ws.test_queries, 100), ws.qrels)["full"]
        form = "residual" if residual else "plain"
        rows.append((f"tied-atomic ({form})", "untrained", untrained))
        trained = systems["tied-atomic"]["metrics"]["full"]
        rows.append((f"tied-atomic ({form})", " ".join(args.set + (args.residual_set if residual else []))
                     or "default", trained))
    lines = [f"# Never below the encoder: {args.dataset}, pseudo-queries only (--train-split '')", "",
             "| system | training | nDCG@10 | R@100 |", "|---|---|---|---|"]
    lines += [f"| {n} | {t} | {m['nDCG@10']:.3f} | {m['R@100']:.3f} |" for n, t, m in rows]
    text = "\n".join(lines) + "\n"
    (out / "never-below.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
