"""Docid search at scale: the prefix tree and the batched constrained beam search at 10k, 100k and 1M
docids, for every docid shape genir has.

Shapes (codes drawn at random, unique per document, as each scheme's tables look):
- semantic: hierarchical k-means, c = 32 children per node, depth ceil(log_32 N)
- genret:   K = 512 codes per step, M = smallest with K^M >= 10 N (2 at 10k, 3 at 100k and 1M)
- glen:     n = 3 tokens of a 30,522-word vocabulary
- merge:    4 levels x 256 codes
- atomic:   one code per document (the output layer has N rows)

The decoder is replaced by a random output layer of the shape's size over a fixed query state (what the
search pays per step besides the decoder's layers, which do not grow with N), so the figures are the
search's own: prefix-tree build time, its bytes per docid, and beam-100 queries/s (batches of 16). The
index of a dense retriever is 1,536 bytes per document (384 x fp32).

``--decoder`` runs genir's default decoder instead (2 layers, width 256, FFN 512, cross-attention over 20
query states of width 384, random weights: the cost of a trained one) with the shape's output layer, and
``--dense`` times exact dense search (faiss flat inner product over N random unit vectors, 384-d, the same
queries and batches) in the same process: the generative retriever against exact dense search at N
documents, both without the query encoder they share.

    python bench/scale.py --sizes 10000 100000 1000000 --out bench_runs/scale
    python bench/scale.py --sizes 1000000 --decoder --dense --shape semantic --shape genret --out bench_runs/scale-1m
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from pathlib import Path

import numpy as np
import torch

SHAPES = {"semantic": (32, None), "genret": (512, None), "glen": (30522, 3), "merge": (256, 4), "atomic": (None, 1)}


def codes_for(shape: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(n, depth) unique code rows and the code vocabulary size."""
    vocab, depth = SHAPES[shape]
    if shape == "atomic":
        return np.arange(n, dtype=np.int64)[:, None], n
    if shape == "semantic":
        depth = max(1, math.ceil(math.log(2 * n) / math.log(vocab)))  # k-means trees are not full
    if shape == "genret":
        depth = max(1, math.ceil(math.log(10 * n) / math.log(vocab)))
    space = vocab ** depth
    if space < 2 * n:
        raise ValueError(f"{shape}: {vocab}^{depth} codes cannot hold {n} unique docids")
    flat = rng.choice(space, size=n, replace=False) if space < 2**62 else np.unique(
        rng.integers(0, space, size=int(n * 1.01)))[:n]
    rows = np.zeros((n, depth), dtype=np.int64)
    for level in range(depth - 1, -1, -1):
        rows[:, level] = flat % vocab
        flat //= vocab
    return rows, vocab


class RandomHead:
    """Stands in for the decoder: every step returns logits = q @ W over the shape's outputs, per beam row;
    ``per_query`` computes them once per query and hands each beam its query's row (GLEN's shared steps:
    with the hidden feed its decoder does not depend on the tokens chosen, see genir.methods.glen.model)."""

    def __init__(self, n_out: int, dim: int = 256, seed: int = 0, per_query: bool = False):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(dim, n_out, generator=g) / dim ** 0.5
        self.bos, self.per_query = n_out, per_query

    def start(self, memory, mask):
        if self.per_query:
            return memory[:, 0] @ self.w, torch.arange(memory.shape[0])
        return memory[:, 0]

    def step(self, state, prev):
        if self.per_query:
            return state[0][state[1]], state
        return state @ self.w, state

    def reorder(self, state, rows):
        if self.per_query:
            return state[0], state[1][rows]
        return state.index_select(0, rows)


def decoder_model(n_codes: int, memory_dim: int = 384):
    """genir's docid model with the default decoder over a small stand-in encoder (the encoder is not run:
    the search starts from query states), random weights."""
    from transformers import BertConfig

    from genir.models import DocidSeq2Seq, ModelConfig

    folder = Path(f"/tmp/genir_scale_encoder_{memory_dim}")
    if not (folder / "config.json").exists():
        from transformers import BertModel

        BertModel(BertConfig(hidden_size=memory_dim, num_hidden_layers=1, num_attention_heads=6,
                             intermediate_size=64, vocab_size=100)).save_pretrained(folder)
        _tokenizer(folder)
    config = ModelConfig(n_codes=n_codes, backbone=str(folder), decoder_layers=2, decoder_dim=256, decoder_ff=512)
    return DocidSeq2Seq(config).eval()


def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, **{f"w{i}": 4 + i for i in range(96)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(folder)


def dense_qps(n: int, queries: int, k: int = 100, dim: int = 384) -> dict:
    """Exact dense search (faiss IndexFlatIP) over n random unit vectors: queries/s in batches of 16."""
    import faiss

    faiss.cvar.distance_compute_blas_threshold = 1  # its BLAS path for a batch of 16 too: 3x its default's speed
    rng = np.random.default_rng(2)
    index = faiss.IndexFlatIP(dim)
    for s in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - s), dim), dtype=np.float32)
        index.add(block / np.linalg.norm(block, axis=1, keepdims=True))
    q = rng.standard_normal((queries, dim), dtype=np.float32)
    index.search(q[:2], k)  # warm-up
    start = time.perf_counter()
    for s in range(0, queries, 16):
        index.search(q[s: s + 16], k)
    return {"shape": "dense (faiss flat, exact)", "docids": n, "index_bytes_per_docid": dim * 4,
            "queries_per_second": round(queries / (time.perf_counter() - start), 1), "peak_rss_mb": round(peak_mb())}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--shape", action="append", help=f"default: {', '.join(SHAPES)}")
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--beam", type=int, default=100)
    ap.add_argument("--decoder", action="store_true", help="genir's default decoder instead of a random output layer")
    ap.add_argument("--dense", action="store_true", help="also exact dense search (faiss flat) at each size")
    ap.add_argument("--out", type=Path, default=Path("bench_runs/scale"))
    args = ap.parse_args()

    from genir.docids import DocIdTable, PrefixTree
    from genir.search.beam import beam_search

    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    rng = np.random.default_rng(0)
    for n in args.sizes:
        if args.dense:
            rows.append(dense_qps(n, args.queries))
            print(json.dumps(rows[-1]), flush=True)
        for shape in args.shape or list(SHAPES):
            codes, vocab = codes_for(shape, n, rng)
            ids = [f"d{i}" for i in range(n)]
            start = time.perf_counter()
            table = DocIdTable(ids, codes, vocab, shape)
            trie = PrefixTree(table)
            build = time.perf_counter() - start
            if args.decoder:
                head = decoder_model(trie.n_out - 1)
                memory = torch.randn(args.queries, 20, 384, generator=torch.Generator().manual_seed(1))
                mask = torch.ones(args.queries, 20, dtype=torch.long)
            else:
                head = RandomHead(trie.n_out, per_query=shape == "glen")
                memory = torch.randn(args.queries, 1, 256, generator=torch.Generator().manual_seed(1))
                mask = torch.ones(args.queries, 1, dtype=torch.bool)
            with torch.inference_mode():
                beam_search(head, trie, memory[:2], mask[:2], args.beam)  # warm-up
                start = time.perf_counter()
                for s in range(0, args.queries, 16):
                    beam_search(head, trie, memory[s: s + 16], mask[s: s + 16], args.beam)
            qps = args.queries / (time.perf_counter() - start)
            row = {"shape": shape, "docids": n, "depth": trie.depth, "outputs": trie.n_out,
                   "build_seconds": round(build, 2), "trie_bytes_per_docid": round(trie.nbytes() / n, 1),
                   "output_layer_bytes_per_docid": round(trie.n_out * 256 * 4 / n, 1),
                   "decoder": "genir default (2 x 256)" if args.decoder else "random output layer",
                   "queries_per_second": round(qps, 1), "peak_rss_mb": round(peak_mb())}
            rows.append(row)
            print(json.dumps(row), flush=True)
            del trie, table, head
    lines = ["| shape | docids | depth | trie build s | trie bytes/docid | output layer bytes/docid (d 256) | "
             "beam-100 q/s |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['shape']} | {r['docids']:,} | {r.get('depth', '-')} | {r.get('build_seconds', '-')} | "
              f"{r.get('trie_bytes_per_docid', r.get('index_bytes_per_docid'))} | "
              f"{r.get('output_layer_bytes_per_docid', '-')} | {r['queries_per_second']} |" for r in rows]
    (args.out / "scale.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out / "scale.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
