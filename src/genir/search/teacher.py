"""Teacher scores without a cross-encoder: a dense encoder's cosine plus a share of BM25,

    T(q, d) = cos(q, d) + alpha * BM25(q, d) / max_d' BM25(q, d'),

for distillation (Margin-MSE) of any text: training queries and pseudo-queries alike, as GPL (Wang et al.,
2022) labels generated queries with a cross-encoder. At alpha = 0 the teacher is the encoder itself; alpha > 0
adds the lexical matches the encoder misses, in the encoder's own units (cosine).

The two parts come in as they are: the texts' and documents' embeddings (from whatever already holds them,
say a frozen encoder's cache) and the BM25 index, which runs once per text for any number of alphas."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genir.search.bm25 import BM25Searcher


def teacher_scores(bm25: BM25Searcher, text_embeddings: np.ndarray, doc_embeddings: np.ndarray, texts: list[str],
                   alphas: Sequence[float], depth: int = 50, keep: list[set[int]] | None = None, chunk: int = 512,
                   show_progress: bool = False) -> list[list[dict[int, float]]]:
    """For each alpha, for each text: document index -> T(text, d) over the text's candidates, which are
    the teacher's own top ``depth`` (at that alpha), BM25's and the encoder's top ``depth``, and the
    documents in ``keep[i]`` (say, its positives).

    ``text_embeddings`` (one row per text) and ``doc_embeddings`` (one row per document of ``bm25``'s corpus,
    in its order): L2-normalised, from the same encoder."""
    from tqdm.auto import tqdm

    if len(text_embeddings) != len(texts):
        raise ValueError(f"{len(text_embeddings)} text embeddings for {len(texts)} texts")
    n_docs = doc_embeddings.shape[0]
    index = {d: i for i, d in enumerate(bm25.doc_ids)}
    k = min(depth, n_docs)
    out: list[list[dict[int, float]]] = [[] for _ in alphas]
    for start in tqdm(range(0, len(texts), chunk), desc="teacher scores", disable=not show_progress):
        part = texts[start:start + chunk]
        cos = np.asarray(text_embeddings[start:start + chunk], dtype=np.float32) @ doc_embeddings.T
        lex = np.zeros_like(cos)
        hits = bm25.batch_search({str(i): t for i, t in enumerate(part)}, n_docs)
        for i in range(len(part)):
            for h in hits[str(i)]:
                lex[i, index[h.doc_id]] = h.score
        top = lex.max(1, keepdims=True)
        lex /= np.where(top > 0, top, 1.0)
        # candidates every alpha shares: the encoder's top k, BM25's (matching) top k, the documents asked for
        shared = []
        for i in range(len(part)):
            cand = set(np.argpartition(-cos[i], k - 1)[:k].tolist())
            lexical = np.argpartition(-lex[i], k - 1)[:k]
            cand |= set(lexical[lex[i, lexical] > 0].tolist())
            if keep is not None:
                cand |= keep[start + i]
            shared.append(cand)
        for rows, alpha in zip(out, alphas, strict=True):
            score = cos + alpha * lex
            for i in range(len(part)):
                cand = shared[i] | set(np.argpartition(-score[i], k - 1)[:k].tolist())
                rows.append({d: float(score[i, d]) for d in cand})
    return out


def dense_bm25_scores(bm25: BM25Searcher, text_embeddings: np.ndarray, doc_embeddings: np.ndarray, texts: list[str],
                      alpha: float, depth: int = 50, keep: list[set[int]] | None = None, chunk: int = 512,
                      show_progress: bool = False) -> list[dict[int, float]]:
    """:func:`teacher_scores` at one alpha."""
    return teacher_scores(bm25, text_embeddings, doc_embeddings, texts, [alpha], depth, keep, chunk,
                          show_progress)[0]
