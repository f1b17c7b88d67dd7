"""Full fine-tuning as a benchmark: the budget is chosen on held-out training queries, then the chosen
budget is trained on all training queries and evaluated on the test split, next to the frozen row.

For each candidate (a list of ``--set`` values, e.g. ``training.epochs=2``) one run trains without 20% of
the training queries (``--holdout 0.2``) and is evaluated on them; the candidate with the best held-out
nDCG@10 is run again on the whole training split and searched on the test queries. The test split is
never read before the choice is made. The frozen row (same method, default settings) and the baselines
run in a folder of their own.

    python bench/full_finetuning.py --dataset scifact --method tied-atomic \\
        --common training.batch_size=32 data.random_spans=0 \\
        --candidate training.epochs=2 --candidate training.epochs=5 --out bench_runs/ft-scifact
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def genir_run(args: list[str], log: Path) -> None:
    cmd = [sys.executable, "-m", "genir.cli", "run", *args]
    print("$ genir run " + " ".join(args), flush=True)
    with open(log, "a", encoding="utf-8") as f:
        f.write("$ genir run " + " ".join(args) + "\n")
        f.flush()
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"genir run failed ({done.returncode}): see {log}")


def row(report: Path, name: str) -> dict:
    systems = {s["name"]: s for s in json.loads(report.read_text())["systems"]}
    s = systems[name]
    m = s["metrics"]
    return {"nDCG@10": {k: m[k]["nDCG@10"] for k in m}, "R@100": {k: m[k]["R@100"] for k in m},
            "train_seconds": s.get("train_seconds"), "index_seconds": s.get("index_seconds")}


def set_flags(values: list[str]) -> list[str]:
    """``group.key=value`` pairs as ``--set`` flags of ``genir run``."""
    return [x for v in values for x in ("--set", v)]


def candidate_parser(description: str, common_help: str, candidate_help: str) -> argparse.ArgumentParser:
    """The arguments of a bench that chooses among candidate settings on held-out training queries."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--train-split", default="train")
    ap.add_argument("--test-split", default="test")
    ap.add_argument("--method", required=True)
    ap.add_argument("--common", nargs="*", default=[], help=common_help)
    ap.add_argument("--candidate", action="append", required=True, help=candidate_help)
    ap.add_argument("--out", type=Path, required=True)
    return ap


def run_args(args: argparse.Namespace) -> list[str]:
    """The ``genir run`` arguments every run of such a bench shares (dataset, splits, method)."""
    return ["--dataset", args.dataset, "--train-split", args.train_split, "--test-split", args.test_split,
            "--method", args.method]


def main() -> None:
    ap = candidate_parser(__doc__, "--set values of every full fine-tuning run",
                          "one budget: space-separated --set values (chosen on held-out queries)")
    ap.add_argument("--baselines", nargs="*", default=["bm25", "dense", "dense-trained"])
    ap.add_argument("--skip-frozen", action="store_true", help="no frozen row (already measured elsewhere)")
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "runs.log"
    base = run_args(args)
    sets = set_flags(args.common)
    held = []
    for i, cand in enumerate(args.candidate):
        folder = args.out / f"holdout-{i}"
        genir_run([*base, "--no-baselines", "--encoder", "full", "--holdout", "0.2", *sets,
                   *set_flags(cand.split()), "--out", str(folder)], log)
        held.append({"candidate": cand, **row(folder / "report.json", args.method)})
        print(json.dumps(held[-1]), flush=True)
    best = max(range(len(held)), key=lambda i: held[i]["nDCG@10"]["full"])
    chosen = args.candidate[best]
    genir_run([*base, "--no-baselines", "--encoder", "full", *sets, *set_flags(chosen.split()),
               "--out", str(args.out / "full")], log)
    result = {"method": args.method, "dataset": args.dataset, "common": args.common, "holdout": held,
              "chosen": chosen, "full": row(args.out / "full" / "report.json", args.method)}
    if not args.skip_frozen:
        bl = [x for b in args.baselines for x in ("--baseline", b)] or ["--no-baselines"]
        genir_run([*base, *bl, "--out", str(args.out / "frozen")], log)
        report = args.out / "frozen" / "report.json"
        result["frozen"] = row(report, args.method)
        result["baselines"] = {b: row(report, b) for b in args.baselines}
    (args.out / "result.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    subsets = list(result["full"]["nDCG@10"])
    lines = [f"{args.method} on {args.dataset} ({args.test_split}); budget chosen on held-out training queries: "
             f"{chosen} (held-out nDCG@10: " + ", ".join(f"{h['candidate']} {h['nDCG@10']['full']:.3f}" for h in held)
             + ")", "", "| row | " + " | ".join(f"nDCG@10 {s}" for s in subsets) + " | R@100 full | train s |",
             "|---|" + "---|" * (len(subsets) + 2)]
    rows = [(f"{args.method} full", result["full"])]
    if "frozen" in result:
        rows += [(f"{args.method} frozen", result["frozen"]), *result["baselines"].items()]
    for name, r in rows:
        lines.append(f"| {name} | " + " | ".join(f"{r['nDCG@10'].get(s, float('nan')):.3f}" for s in subsets)
                     + f" | {r['R@100']['full']:.3f} | {r['train_seconds'] or 0:.0f} |")
    (args.out / "result.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
