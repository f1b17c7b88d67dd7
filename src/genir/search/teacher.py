"""Teacher scores without a cross-encoder: a dense encoder's cosine plus a share of BM25,

    T(q, d) = cos(q, d) + alpha * BM25(q, d) / max_d' BM25(q, d'),

for distillation (Margin-MSE) of any text: training queries and pseudo-queries alike, as GPL (Wang et al.,
2022) labels generated queries with a cross-encoder. At alpha = 0 the teacher is the encoder itself; alpha > 0
adds the lexical matches the encoder misses, in the encoder's own units (cosine)."""

from __future__ import annotations

import numpy as np

from genir.search.bm25 import BM25Searcher


def dense_bm25_scores(bm25: BM25Searcher, encoder, doc_embeddings: np.ndarray, texts: list[str], alpha: float,
                      depth: int = 50, keep: list[set[int]] | None = None, chunk: int = 512,
                      show_progress: bool = False) -> list[dict[int, float]]:
    """For each text, document index -> T(text, d) over its candidates: the teacher's own top ``depth``,
    BM25's and the encoder's top ``depth``, and the documents in ``keep[i]`` (say, its positives).

    ``doc_embeddings``: L2-normalised, one row per document of ``bm25``'s corpus, in its order;
    ``encoder``: a sentence-transformers model (the one that made ``doc_embeddings``)."""
    from tqdm.auto import tqdm

    n_docs = doc_embeddings.shape[0]
    index = {d: i for i, d in enumerate(bm25.doc_ids)}
    out: list[dict[int, float]] = []
    for start in tqdm(range(0, len(texts), chunk), desc="teacher scores", disable=not show_progress):
        part = texts[start:start + chunk]
        cos = encoder.encode(part, batch_size=64, normalize_embeddings=True, convert_to_numpy=True) @ doc_embeddings.T
        lex = np.zeros_like(cos)
        hits = bm25.batch_search({str(i): t for i, t in enumerate(part)}, n_docs)
        for i in range(len(part)):
            for h in hits[str(i)]:
                lex[i, index[h.doc_id]] = h.score
        top = lex.max(1, keepdims=True)
        score = cos + alpha * lex / np.where(top > 0, top, 1.0)
        k = min(depth, n_docs)
        for i in range(len(part)):
            cand = set(np.argpartition(-score[i], k - 1)[:k].tolist())
            cand |= set(np.argpartition(-cos[i], k - 1)[:k].tolist())
            lexical = np.argpartition(-lex[i], k - 1)[:k]
            cand |= set(lexical[lex[i, lexical] > 0].tolist())
            if keep is not None:
                cand |= keep[start + i]
            out.append({d: float(score[i, d]) for d in cand})
    return out
