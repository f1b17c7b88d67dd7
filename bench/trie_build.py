"""The prefix tree built from the code matrix (numpy) at 1M and 10M docids, for each docid shape: build
time, bytes per docid (the tree's arrays and its leaf-document lists) and the build's peak memory.

Usage:

    python bench/trie_build.py --docs 1000000 10000000

Each shape and size runs in its own process (its peak resident memory is the build's, with numpy's
temporaries; the codes themselves are made first and their size subtracted).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SHAPES = {"atomic": (1, None), "semantic 3 x 256": (3, 256), "GenRet 3 x 512": (3, 512), "MERGE 4 x 256": (4, 256),
          "GLEN 3 x 30522": (3, 30522)}


def one(shape: str, n: int) -> dict:
    import numpy as np

    from genir.docids import DocIdTable, PrefixTree

    length, k = SHAPES[shape]
    rng = np.random.default_rng(0)
    codes = np.arange(n, dtype=np.int64)[:, None] if k is None else rng.integers(0, k, size=(n, length))
    table = DocIdTable.__new__(DocIdTable)  # no document ids: the tree reads only the codes
    table.doc_ids, table.codes, table.vocab_size, table.scheme, table.meta = [], codes, k or n, shape, {}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    tree = PrefixTree(table)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    size = tree.nbytes() + tree.leaf_docs.nbytes() + tree.is_leaf.numel()
    return {"shape": shape, "docids": n, "seconds": round(seconds, 2), "bytes_per_docid": round(size / n, 1),
            "peak_extra_MB": round(peak / 1024, 1), "nodes": tree.n_nodes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--shape", nargs="+", default=list(SHAPES))
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], int(a.one[1]))))
        return
    print("| docid shape | docids | build s | bytes / docid | peak extra MB | nodes |\n|---|---|---|---|---|---|")
    for n in a.docs:
        for shape in a.shape:
            out = subprocess.run([sys.executable, __file__, "--one", shape, str(n)], capture_output=True, text=True)
            if out.returncode:
                print(f"| {shape} | {n:,} | failed: {out.stderr.strip().splitlines()[-1]} | | | |")
                continue
            r = json.loads(out.stdout)
            print(f"| {shape} | {n:,} | {r['seconds']} | {r['bytes_per_docid']} | {r['peak_extra_MB']} "
                  f"| {r['nodes']:,} |")


if __name__ == "__main__":
    main()
