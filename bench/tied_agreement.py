"""Tied-Atomic: do generative decoding and faiss search agree on a real collection?

    python bench/tied_agreement.py --run-dir runs/scifact --method tied-atomic
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, type=Path)
    ap.add_argument("--method", default="tied-atomic")
    ap.add_argument("--k", type=int, default=100)
    args = ap.parse_args()

    from genir.data import load_dataset
    from genir.methods.tied import TiedSeq2Seq
    from genir.methods.tied.search import TiedAtomicIndex, TiedAtomicSearcher

    cfg = json.loads((args.run_dir / "config.json").read_text())
    coll = load_dataset(cfg["dataset"], cfg.get("data_dir"), cfg.get("qrels_dir", "qrels"))
    model = TiedSeq2Seq.load(args.run_dir / args.method / "model")
    searcher = TiedAtomicSearcher(model, TiedAtomicIndex(model.decoder.d_model))
    searcher.add_documents(list(coll.corpus.values()))
    print(json.dumps(searcher.compare_modes(coll.split_queries(cfg.get("test_split", "test")), args.k)))


if __name__ == "__main__":
    main()
