"""Training throughput, frozen vs full fine-tuning, per method, on a SciFact slice (or any dataset).

Every method trains through `genir run` (its real recipe: GenRet's warm-ups, bank refreshes and k-means,
GLEN's two phases, MERGE's retriever) for a small budget; each phase of the one training loop records how
many examples it took and how long, and this script sums them per method:

    examples/s = training examples / seconds spent in the training loop

An example is one item of the method's training data: a text (DSI, MERGE's retriever), a query with its
positive and 3 BM25 negatives (Tied-Atomic), a document with one of its queries (GenRet), a query with
its positive and 8 negatives (GLEN phase 2; a text in phase 1). MERGE's RQ-VAE (no text encoder) is not
counted.

Frozen runs also pay a one-time encoding of every training text (the cache), reported beside it and not
counted in examples/s. Both encoder modes of one method run back to back, so machine noise hits them alike.

    python bench/throughput.py --docs 400 --out bench_runs/throughput          # CPU, this machine
    python bench/throughput.py --docs 400 --device cuda --out $OUT/throughput  # a GPU (bench/gpu_check.sh)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

METHODS = ["dsi-atomic", "tied-atomic", "genret", "glen", "merge"]
# budgets small enough for a CPU; GenRet and MERGE at slice-sized settings (K and the RQ-VAE codebooks
# must fit a few hundred documents)
OVERRIDES = {
    "genret": {"genret": {"codes": 64, "epochs": 1, "warmup_epochs": 1, "fit_epochs": 1}},
    "glen": {"glen": {"keyword_epochs": 1, "refine_epochs": 1}},
    "merge": {"merge": {"codes": 32, "epochs": 30}},
}


def slice_dataset(name: str, n_docs: int, out: Path) -> Path:
    """The first ``n_docs`` documents judged for training or test queries (then filler), with those queries."""
    from genir.data import load_dataset

    coll = load_dataset(name)
    folder = out / f"{name}-{n_docs}"
    if (folder / "corpus.jsonl").exists():
        return folder
    keep: list[str] = []
    for split in ("train", "test"):
        for rels in coll.qrels.get(split, {}).values():
            keep += [d for d in rels if d not in keep]
    keep = (keep + [d for d in coll.corpus if d not in set(keep)])[:n_docs]
    kept = set(keep)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        for d in coll.corpus:
            if d in kept:
                doc = coll.corpus[d]
                f.write(json.dumps({"_id": d, "title": doc.title, "text": doc.text}) + "\n")
    queries = set()
    for split in ("train", "test"):
        with open(folder / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for q, rels in coll.qrels.get(split, {}).items():
                for d, g in rels.items():
                    if d in kept:
                        f.write(f"{q}\t{d}\t{g}\n")
                        queries.add(q)
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as f:
        for q in sorted(queries):
            f.write(json.dumps({"_id": q, "text": coll.queries[q]}) + "\n")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--docs", type=int, default=400, help="documents in the slice")
    ap.add_argument("--method", action="append", help=f"default: {', '.join(METHODS)}")
    ap.add_argument("--encoders", nargs="+", default=["frozen", "full"])
    ap.add_argument("--epochs", type=float, default=1.0, help="DSI, Tied-Atomic and MERGE retriever epochs")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--backbone", default="minilm", help="'minilm' (bundled) or a model folder (bench/gpu_check.sh)")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--out", type=Path, default=Path("bench_runs/throughput"))
    args = ap.parse_args()

    import torch

    import genir.training.loop as loop
    from genir.methods import make_settings
    from genir.pipeline import run

    totals = {"examples": 0.0, "seconds": 0.0}
    train = loop.Trainer.train

    def counted(self):  # every phase of every method goes through here
        info = train(self)
        if hasattr(self.model, "encoder"):  # the retriever's phases, not MERGE's RQ-VAE (no text encoder)
            totals["examples"] += info["examples_per_second"] * info["seconds"]
            totals["seconds"] += info["seconds"]
        return info

    loop.Trainer.train = counted
    data = slice_dataset(args.dataset, args.docs, args.out)
    rows = []
    for method in args.method or METHODS:
        for encoder in args.encoders:
            totals.update(examples=0.0, seconds=0.0)
            out = args.out / f"{method}-{encoder}"
            cfg = make_settings({
                "data": {"dataset": str(data), "max_test_queries": 20}, "baselines": [], "methods": [method],
                "model": {"encoder": encoder, "backbone": args.backbone},
                **({"dense": {"model": args.backbone}} if args.backbone != "minilm" else {}),
                "training": {"epochs": args.epochs, "batch_size": args.batch_size, "device": args.device,
                             "precision": args.precision, "checkpoint_every": 0},
                "search": {"beam": 10}, "out": str(out), **OVERRIDES.get(method, {})})
            start = time.perf_counter()
            report = run(cfg, fresh=True)
            wall = time.perf_counter() - start
            if report["failed"]:
                raise SystemExit(f"{method} ({encoder}) failed: {report['failed']}")
            info = json.loads((out / method / "train.json").read_text())
            row = {"method": method, "encoder": encoder, "examples": round(totals["examples"]),
                   "train_seconds": round(totals["seconds"], 1),
                   "examples_per_second": totals["examples"] / max(totals["seconds"], 1e-9),
                   "encode_cache_seconds": round(info.get("encode_seconds", 0.0), 1), "wall_seconds": round(wall, 1),
                   "device": report["device"], "precision": args.precision}
            rows.append(row)
            print(json.dumps(row), flush=True)
    by = {(r["method"], r["encoder"]): r for r in rows}
    lines = [f"Training throughput on {args.dataset}, {args.docs} documents, batch {args.batch_size}, "
             f"{rows[0]['device']}, {args.precision}, torch {torch.__version__}", "",
             "| method | frozen ex/s | full ex/s | full / frozen | frozen cache (s) |", "|---|---|---|---|---|"]
    for method in args.method or METHODS:
        fz, fl = by.get((method, "frozen")), by.get((method, "full"))
        ratio = f"{fl['examples_per_second'] / fz['examples_per_second']:.2f}" if fz and fl else "-"
        lines.append(f"| {method} | {fz['examples_per_second']:.1f} | " if fz else f"| {method} | - | ")
        lines[-1] += (f"{fl['examples_per_second']:.1f} | " if fl else "- | ") + \
            f"{ratio} | {fz['encode_cache_seconds'] if fz else '-'} |"
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throughput.md").write_text(text + "\n", encoding="utf-8")
    (args.out / "throughput.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
