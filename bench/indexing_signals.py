"""Which query-free indexing texts help a generative retriever: chosen on held-out training queries.

Each candidate is a list of ``--set`` values over the data settings (``data.random_spans``,
``data.sentence_queries``, ``data.title_query``, ``data.keyword_queries``), over the light preset (``--texts
light``: the empty candidate is the leading span and one random span, whatever the method's own preset; a
candidate may set ``data.indexing_texts`` itself). For each, one run trains
without 20% of the training queries (``--holdout 0.2``) and is evaluated on them. The best candidate by
held-out nDCG@10 and the first candidate (the reference, usually genir's default) are then trained on the
whole training split and searched on the test queries. The test split is never read before the choice.

    python bench/indexing_signals.py --dataset scifact --method tied-atomic --common training.epochs=10 \\
        --candidate "" --candidate "data.random_spans=3" --candidate "data.sentence_queries=3" \\
        --candidate "data.title_query=true" --candidate "data.keyword_queries=2" --out bench_runs/signals
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from full_finetuning import candidate_parser, genir_run, row, run_args, set_flags  # noqa: E402


def slug(values: str) -> str:
    """A folder name per candidate, so that separate invocations (say, two halves run side by side) share
    the runs: ``genir run`` reuses a folder made with the same settings."""
    return re.sub(r"[^A-Za-z0-9]+", "-", values.replace("data.", "")).strip("-") or "default"


def main() -> None:
    ap = candidate_parser(__doc__, "--set values of every run",
                          "space-separated --set values; the first is the reference")
    ap.add_argument("--holdout-only", action="store_true", help="stop after the choice (no test runs)")
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "runs.log"
    base = [*run_args(args), "--no-baselines", "--texts", "light", *set_flags(args.common)]
    held = []
    for cand in args.candidate:
        folder = args.out / f"holdout-{slug(cand)}"
        genir_run([*base, "--holdout", "0.2", *set_flags(cand.split()), "--out", str(folder)], log)
        report = json.loads((folder / "report.json").read_text())
        system = next((x for x in report["systems"] if x.get("name") == args.method), {})
        texts = (system.get("indexing_texts") or {}).get("texts")  # reported since methods have their own texts
        held.append({"candidate": cand or "(default)", "texts": texts, **row(folder / "report.json", args.method),
                     "queries": report["queries"]})
        print(json.dumps(held[-1]), flush=True)
    best = max(range(len(held)), key=lambda i: held[i]["nDCG@10"]["full"])
    result = {"method": args.method, "dataset": args.dataset, "common": args.common, "holdout": held,
              "chosen": held[best]["candidate"]}
    tested = {}
    if not args.holdout_only:
        for i in dict.fromkeys([0, best]):
            folder = args.out / f"test-{slug(args.candidate[i])}"
            genir_run([*base, *set_flags(args.candidate[i].split()), "--out", str(folder)], log)
            tested[held[i]["candidate"]] = row(folder / "report.json", args.method)
        result["test"] = tested
    (args.out / "result.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    lines = [f"{args.method} on {args.dataset}, common settings: {' '.join(args.common) or '(none)'}", "",
             "| indexing texts | texts encoded | held-out nDCG@10 | held-out R@100 | train s |",
             "|---|---|---|---|---|"]
    for h in held:
        lines.append(f"| {h['candidate']} | {h['texts']} | {h['nDCG@10']['full']:.3f} | {h['R@100']['full']:.3f} "
                     f"| {h['train_seconds'] or 0:.0f} |")
    if tested:
        subsets = list(next(iter(tested.values()))["nDCG@10"])
        lines += ["", f"Test ({args.test_split}), the reference and the choice:", "",
                  "| indexing texts | " + " | ".join(f"nDCG@10 {s}" for s in subsets) + " | R@100 full |",
                  "|---|" + "---|" * (len(subsets) + 1)]
        for name, r in tested.items():
            lines.append(f"| {name} | " + " | ".join(f"{r['nDCG@10'][s]:.3f}" for s in subsets)
                         + f" | {r['R@100']['full']:.3f} |")
    (args.out / "result.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
