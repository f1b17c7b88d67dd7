"""Hybrid search, its weight chosen on held-out training queries: two systems' run files fused (RRF or
score interpolation); the weight with the best nDCG@10 on a ``--holdout`` run's held-out queries is then
applied, unchanged, to the test run. The test queries are not read before the weight is fixed.

    python bench/hybrid.py --pair tied-atomic+bm25 \\
        --holdout-run bench_runs/ft-scifact-tied/holdout-1 --test-run bench_runs/ft-scifact-tied/full \\
        --test-run-b bench_runs/ft-scifact-tied/frozen

A system's run file is RUN/NAME/NAME.trec (a method) or RUN/baselines/NAME.trec (a baseline); BM25 and
dense missing from a run are searched here on that run's queries (``--test-run-b``: where the second
system's test run file lies, when not in the first's run folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run_file(run: Path, name: str) -> Path:
    for p in (run / name / f"{name}.trec", run / "baselines" / f"{name}.trec"):
        if p.exists():
            return p
    return run / "baselines" / f"{name}.trec"


def results_of(run: Path, name: str, ws):
    from genir.evaluation.trec import read_run

    path = run_file(run, name)
    if path.exists():
        return read_run(path)
    if name not in ("bm25", "dense"):
        raise SystemExit(f"{path}: no run file for {name}")
    from genir.methods.baselines import BASELINES

    searcher, _, _ = BASELINES[name](ws)
    return searcher.batch_search(ws.test_queries, ws.settings.search.k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", required=True, help="a+b")
    ap.add_argument("--holdout-run", required=True)
    ap.add_argument("--test-run", required=True)
    ap.add_argument("--test-run-b", help="the second system's test run folder (default: --test-run)")
    ap.add_argument("--mode", default="rrf", choices=["rrf", "interpolate"])
    ap.add_argument("--weights", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1")
    args = ap.parse_args()
    from genir.evaluation.metrics import evaluate
    from genir.methods import read_settings
    from genir.search.fusion import fuse
    from genir.workspace import Workspace

    a, _, b = args.pair.partition("+")
    hold = Path(args.holdout_run)
    ws = Workspace(read_settings(hold), hold)
    if ws.test_split != "holdout":
        raise SystemExit(f"{hold}: not a --holdout run (its queries are {ws.test_split!r})")
    ra, rb = results_of(hold, a, ws), results_of(hold, b, ws)
    weights = [float(w) for w in args.weights.split(",")]
    sweep = {w: evaluate(fuse(ra, rb, w, args.mode), ws.qrels)["full"]["nDCG@10"] for w in weights}
    best = max(weights, key=lambda w: (sweep[w], -abs(w - 0.5)))
    test = Path(args.test_run)
    tws = Workspace(read_settings(test), test)
    ta, tb = results_of(test, a, tws), results_of(Path(args.test_run_b or test), b, tws)
    rows = {a: ta, b: tb, f"{a}+{b} ({args.mode}, weight {best:g} on {a})": fuse(ta, tb, best, args.mode)}
    lines = [f"# Hybrid {a} + {b}: weight chosen on {len(ws.qrels)} held-out training queries", "",
             "Held-out nDCG@10 by weight on " + a + ": " + ", ".join(f"{w:g}: {v:.3f}" for w, v in sweep.items()),
             "", f"Test ({len(tws.qrels)} queries), weight {best:g}:", "",
             "| system | nDCG@10 full | seen | unseen | R@100 full |", "|---|---|---|---|---|"]
    for name, res in rows.items():
        m = evaluate(res, tws.qrels, subsets=tws.subsets)
        lines.append(f"| {name} | {m['full']['nDCG@10']:.3f} | {m.get('seen', {}).get('nDCG@10', float('nan')):.3f} "
                     f"| {m.get('unseen', {}).get('nDCG@10', float('nan')):.3f} | {m['full']['R@100']:.3f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
