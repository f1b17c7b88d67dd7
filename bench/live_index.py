"""Live index, measured: documents held out of training (``--new-docs``), withdrawn from the index, then added
back with ``genir index add`` as a user would add new documents. Reports, per method and baseline, nDCG@10 /
R@100 on the test queries that judge a held-out document (the new-docs subset), next to the figure the run
measured when those documents were indexed at training time, and the time per added document.

    python bench/live_index.py --dataset scifact --out bench_runs/live-scifact \\
        --set training.epochs=5 genret.epochs=5 genret.warmup_epochs=1 genret.fit_epochs=5 \\
              glen.keyword_epochs=5 glen.refine_epochs=2

The held-out documents are never trained on (the run leaves them out of every training example), so
removing and adding them back is the same as adding documents that arrive after training.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

METHODS = ["dsi-semantic", "tied-atomic", "genret", "glen", "merge", "dsi-atomic"]


def genir(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "genir.cli", *args], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"genir {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--new-docs", type=float, default=0.1)
    ap.add_argument("--method", action="append", help=f"default: {' '.join(METHODS)}")
    ap.add_argument("--set", nargs="*", default=[], help="--set values of the training run")
    ap.add_argument("--out", required=True)
    ap.add_argument("--skip-run", action="store_true", help="the run folder is trained already: use it as it is")
    args = ap.parse_args()
    out = Path(args.out)
    methods = args.method or METHODS
    flags = ["run", "--dataset", args.dataset, "--new-docs", str(args.new_docs), "--out", str(out),
             "--baseline", "bm25", "--baseline", "dense"]
    for m in methods:
        flags += ["--method", m]
    for s in args.set:
        flags += ["--set", s]
    start = time.perf_counter()
    if not args.skip_run:
        genir(*flags)
    train_minutes = (time.perf_counter() - start) / 60

    from genir.evaluation.metrics import evaluate
    from genir.live import LiveIndex
    from genir.methods import read_settings
    from genir.workspace import Workspace

    ws = Workspace(read_settings(out), out)
    new = [d for d in ws.docs if d.id in ws.new_doc_ids]
    subset = sorted(ws.subsets["new-docs"])
    docs_file = out.parent / f"{out.name}-new-docs.jsonl"
    docs_file.write_text("".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in new))
    ids_file = out.parent / f"{out.name}-new-docs.txt"
    ids_file.write_text("".join(d.id + "\n" for d in new))
    if (out / "live").exists():
        import shutil

        shutil.rmtree(out / "live")
    genir("index", "remove", str(out), f"@{ids_file}")
    removed = LiveIndex(out)
    queries = {q: ws.test_queries[q] for q in subset}
    qrels = {q: ws.qrels[q] for q in subset}
    while_removed = {n: evaluate(removed.searcher(n).batch_search(queries, 100), qrels)["full"] for n in removed.names}
    start = time.perf_counter()
    cli_report = json.loads(genir("index", "add", str(out), str(docs_file)).strip().splitlines()[-1])
    add_wall = time.perf_counter() - start
    # the service's path, timed in process: searchers open, the documents added, the searchers follow
    genir("index", "remove", str(out), f"@{ids_file}")
    live = LiveIndex(out)
    for name in live.names:
        live.searcher(name)
    add_report = live.add(new)
    assert {n: r.get("documents") for n, r in add_report.items()} == \
        {n: r.get("documents") for n, r in cli_report.items() if n in add_report}
    report = json.loads((out / "report.json").read_text())
    at_training = {s["name"]: s["metrics"].get("new-docs", {}) for s in report["systems"]}
    rows = []
    for name in live.names:
        r = add_report.get(name, {})
        if "refused" in r:
            rows.append((name, None, None, at_training.get(name, {}), while_removed[name], r["refused"]))
            continue
        m = evaluate(live.searcher(name).batch_search(queries, 100), qrels)["full"]
        per_doc = (r.get("seconds", 0.0) + r.get("searcher_seconds", 0.0)) / max(len(new), 1) * 1000
        rows.append((name, m, per_doc, at_training.get(name, {}), while_removed[name], r.get("sharing_a_docid")))
    lines = [f"# Live index: {args.dataset}, {len(new)} documents held out of training (--new-docs {args.new_docs}), "
             f"added back with `genir index add`", "",
             f"{len(subset)} test queries judge a held-out document. Training run: "
             f"{'made earlier' if args.skip_run else f'{train_minutes:.1f} min'} "
             f"({' '.join(args.set) or 'default budgets'}); `genir index add` wall time {add_wall:.1f} s for "
             f"{len(new)} documents (process start and model loading included).", "",
             "ms per added document: its docid (or embedding) plus bringing the open searcher up to date "
             "(Tied-Atomic encodes the documents; BM25 rebuilds its index; generative methods rebuild the trie), "
             "over the documents added in one call.", "",
             "| system | nDCG@10 added live | R@100 added live | indexed at training: nDCG@10 / R@100 | "
             "while removed: nDCG@10 / R@100 | ms per added document | note |", "|---|---|---|---|---|---|---|"]
    for name, m, per_doc, trained, gone, note in rows:
        t = f"{trained['nDCG@10']:.3f} / {trained['R@100']:.3f}" if trained else "-"
        g = f"{gone['nDCG@10']:.3f} / {gone['R@100']:.3f}"
        if m is None:
            lines.append(f"| {name} | refused | refused | {t} | {g} | - | {note} |")
        else:
            lines.append(f"| {name} | {m['nDCG@10']:.3f} | {m['R@100']:.3f} | {t} | {g} | {per_doc:.1f} | "
                         f"{f'{note} share an existing docid' if note else ''} |")
    text = "\n".join(lines) + "\n"
    (out.parent / f"{out.name}-live.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
