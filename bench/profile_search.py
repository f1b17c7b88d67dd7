"""Where a generative query's time goes: tokenisation, the encoder, the decoder's start (cross-attention
keys and values), its steps, the allowed children of every beam (the prefix tree's CSR gather), the beams'
reordering, the rest of the beam search (scores, top-k, bookkeeping) and the result assembly (docids to
documents, tie-breaks).

Usage (after `genir run`, which leaves trained method folders):

    python bench/profile_search.py --run-dir runs/scifact --method dsi-semantic --method dsi-atomic \\
        --method genret --dataset scifact --beam 100 --beam 10

Every part is timed around the call that does it (wall clock, one process; on a GPU add a synchronise).
The searcher is the one `genir search` opens (`Retriever.load`); the queries are the test split's.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from contextlib import contextmanager

PARTS = ["tokenisation", "encoder", "decoder start", "decoder steps", "allowed children", "beam reorder",
         "top-k and bookkeeping", "result assembly"]


class Timer:
    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def part(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def wrap(self, obj, attr: str, name: str):
        original = getattr(obj, attr)

        def timed(*args, **kwargs):
            with self.part(name):
                return original(*args, **kwargs)

        setattr(obj, attr, timed)


def profile(searcher, queries: dict[str, str], k: int) -> tuple[dict[str, float], float]:
    """(seconds per part, total seconds) of one ``batch_search`` over ``queries``."""
    import genir.search.beam as beam
    import genir.search.generative as generative
    from genir.docids.trie import PrefixTree

    timer = Timer()
    model = searcher.model
    timer.wrap(model, "tokenize", "tokenisation")
    timer.wrap(model, "encode", "encoder")
    for attr, name in (("start", "decoder start"), ("step", "decoder steps"), ("reorder", "beam reorder")):
        if hasattr(model, attr):
            timer.wrap(model, attr, name)
    edges = PrefixTree.edges
    original_beam = generative.beam_search

    def timed_edges(self, nodes):
        with timer.part("allowed children"):
            return edges(self, nodes)

    def timed_beam(*args, **kwargs):
        with timer.part("beam search"):
            return original_beam(*args, **kwargs)

    PrefixTree.edges, generative.beam_search = timed_edges, timed_beam
    try:
        start = time.perf_counter()
        searcher.batch_search(queries, k)
        total = time.perf_counter() - start
    finally:
        PrefixTree.edges, generative.beam_search = edges, original_beam
        for attr in ("tokenize", "encode", "start", "step", "reorder"):
            model.__dict__.pop(attr, None)
    s = timer.seconds
    inner = sum(s[p] for p in ("decoder start", "decoder steps", "allowed children", "beam reorder"))
    s["top-k and bookkeeping"] = max(0.0, s.pop("beam search", 0.0) - inner)
    s["result assembly"] = max(0.0, total - sum(s[p] for p in PARTS if p != "result assembly"))
    del beam
    return dict(s), total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--method", action="append", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--beam", type=int, action="append")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--decoder-precision", default="fp32", choices=["fp32", "bf16"],
                    help="search.decoder_precision of the searchers profiled")
    ap.add_argument("--prefix-beam", type=int, action="append", default=[],
                    help="each method at each beam also with this search.prefix_beam (those under the beam)")
    a = ap.parse_args()

    from pathlib import Path

    import torch

    from genir.data import load_dataset
    from genir.methods import get_method
    from genir.retriever import Retriever

    torch.set_num_threads(torch.get_num_threads())
    coll = load_dataset(a.dataset)
    queries = dict(list(coll.split_queries(a.split).items())[: a.queries])
    print(f"{len(queries)} queries of {a.dataset} {a.split}, k {a.k}; ms per query (share of the total)\n")
    print(f"decoder precision {a.decoder_precision}\n")
    print("| method | beam | prefix beam | " + " | ".join(PARTS) + " | total | queries/s |")
    print("|---|---|---|" + "---|" * (len(PARTS) + 2))
    for method in a.method:
        for beam in a.beam or [100]:
            for prefix_beam in [None, *[p for p in a.prefix_beam if p < beam]]:
                narrow = {"search.prefix_beam": prefix_beam} if prefix_beam else {}
                searcher = Retriever.load(Path(a.run_dir) / method, beam=beam if get_method(method).decodes else None,
                                          overrides={
                    "search.decoder_precision": a.decoder_precision, **narrow}).searcher
                searcher.batch_search(dict(list(queries.items())[:8]), a.k)  # warm-up
                parts, total = profile(searcher, queries, a.k)
                cells = [f"{1000 * parts.get(p, 0.0) / len(queries):.2f} ({parts.get(p, 0.0) / total:.0%})"
                         for p in PARTS]
                print(f"| {method} | {beam} | {prefix_beam or beam} | " + " | ".join(cells)
                      + f" | {1000 * total / len(queries):.2f} | {len(queries) / total:.1f} |")


if __name__ == "__main__":
    main()
