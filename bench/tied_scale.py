"""Tied-Atomic at scale: search over 5k / 100k / 1M document vectors, generative and dense.

Tied docids are vectors, not vocabulary entries, so the docid set grows like a dense index. This measures,
on synthetic clustered unit vectors of the decoder's width (no training needed for speed and memory):
- dense: faiss flat inner product (exact) and IVF (4 sqrt(n) lists; recall@k against flat reported);
- generative: one constrained decoding step whose output layer is the document matrix (a tiny random
  backbone supplies the query-side decoder state; its cost is included).

    python bench/tied_scale.py --sizes 5000 100000 1000000 --dim 256
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch


def _unit(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(n: int, d: int, rng: np.random.Generator, spread: float = 0.6) -> np.ndarray:
    """Unit vectors around n/1000 random topics: text embeddings cluster, uniform noise does not (and no
    approximate index beats a scan on uniform noise)."""
    centers = _unit(max(16, n // 1000), d, rng)
    x = centers[rng.integers(0, len(centers), n)] + spread * _unit(n, d, rng)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 100000, 1000000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--nprobe", type=int, default=16, help="IVF lists visited per query")
    ap.add_argument("--generative-max", type=int, default=1000000, help="skip generative search above this size")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        docs = _clustered(n, args.dim, rng)
        # queries: noisy copies of random documents, so each has a neighbourhood to find
        queries = docs[rng.integers(0, n, args.queries)] + 0.6 * _unit(args.queries, args.dim, rng)
        queries = np.ascontiguousarray(queries / np.linalg.norm(queries, axis=1, keepdims=True), dtype=np.float32)
        row: dict = {"documents": n, "vector_bytes": docs.nbytes}
        flat = faiss.IndexFlatIP(args.dim)
        flat.add(docs)
        start = time.perf_counter()
        _, exact = flat.search(queries, args.k)
        row["flat_qps"] = args.queries / (time.perf_counter() - start)
        row["flat_bytes"] = faiss.serialize_index(flat).nbytes
        nlist = int(4 * np.sqrt(n))
        start = time.perf_counter()
        ivf = faiss.index_factory(args.dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        ivf.train(docs)
        ivf.add(docs)
        row["ivf_build_s"] = time.perf_counter() - start
        faiss.extract_index_ivf(ivf).nprobe = args.nprobe
        start = time.perf_counter()
        _, approx = ivf.search(queries, args.k)
        row["ivf_qps"] = args.queries / (time.perf_counter() - start)
        row["ivf_bytes"] = faiss.serialize_index(ivf).nbytes
        row["ivf_recall_at_k"] = float(np.mean([len(set(a) & set(e)) / args.k for a, e in zip(approx, exact,
                                                                                               strict=True)]))
        if n <= args.generative_max:
            row.update(_generative(docs, queries, args))
        rows.append(row)
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def tiny_model(dim: int):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from genir.methods.tied import TiedSeq2Seq
    from genir.models import ModelConfig, bundled_minilm_path

    folder = tempfile.mkdtemp(prefix="genir-tiny-")
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=dim, num_hidden_layers=1, num_attention_heads=4, intermediate_size=2 * dim)
              ).save_pretrained(folder)
    AutoTokenizer.from_pretrained(bundled_minilm_path()).save_pretrained(folder)
    return TiedSeq2Seq(ModelConfig(n_codes=1, backbone=folder, decoder_ff=2 * dim)).eval()


def _generative(docs: np.ndarray, queries: np.ndarray, args) -> dict:
    """One decoding step over the tied docid matrix, through the shared beam search and trie."""
    from genir.docids import PrefixTree, atomic_docids
    from genir.methods.tied.search import TiedGenerativeView
    from genir.search.beam import beam_search

    model = tiny_model(args.dim)
    start = time.perf_counter()
    table = atomic_docids([str(i) for i in range(len(docs))])
    trie = PrefixTree(table)
    build = time.perf_counter() - start
    view = TiedGenerativeView(model, torch.from_numpy(docs))
    # fixed synthetic memories stand in for encoded query text; the decoder step and the head are real
    memory = torch.from_numpy(np.repeat(queries[:, None, :], 4, axis=1))
    mask = torch.ones(memory.shape[:2], dtype=torch.bool)
    start = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(queries), 16):
            beam_search(view, trie, memory[s: s + 16], mask[s: s + 16], args.k, normalize=False)
    return {"generative_qps": len(queries) / (time.perf_counter() - start), "trie_build_s": build,
            "trie_bytes": trie.nbytes()}


if __name__ == "__main__":
    main()
