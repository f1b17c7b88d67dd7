"""Hybrid search: two rankings fused, by reciprocal rank fusion (Cormack et al. 2009) or by interpolating
min-max normalised scores. ``weight`` is the first ranking's share (0..1)."""

from __future__ import annotations

from collections.abc import Mapping

from genir.search.base import Hit, Results, Searcher

MODES = ("rrf", "interpolate")


def _fuse_one(a: list[Hit], b: list[Hit], weight: float, mode: str, rrf_k: int) -> list[Hit]:
    scores: dict[str, float] = {}
    for hits, w in ((a, weight), (b, 1.0 - weight)):
        if not hits:
            continue
        if mode == "rrf":  # sum of w / (k + rank), rank from 1
            for rank, h in enumerate(hits, 1):
                scores[h.doc_id] = scores.get(h.doc_id, 0.0) + w / (rrf_k + rank)
        else:  # w * (s - min) / (max - min); a document the ranking lacks gets 0 from it
            top, low = max(h.score for h in hits), min(h.score for h in hits)
            span = top - low if top > low else 1.0
            for h in hits:
                scores[h.doc_id] = scores.get(h.doc_id, 0.0) + w * (h.score - low) / span
    order = sorted(scores, key=lambda d: -scores[d])  # stable: ties keep the first ranking's order
    return [Hit(d, scores[d]) for d in order]


def fuse(a: Results, b: Results, weight: float = 0.5, mode: str = "rrf", k: int = 100, rrf_k: int = 60) -> Results:
    """Per query, the fused ranking of ``a`` and ``b`` (the union of their hits), best first, cut at ``k``."""
    if mode not in MODES:
        raise ValueError(f"fusion mode must be one of {MODES}, not {mode!r}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"fusion weight must be in [0, 1], got {weight}")
    return {q: _fuse_one(a.get(q, []), b.get(q, []), weight, mode, rrf_k)[:k] for q in dict.fromkeys([*a, *b])}


class HybridSearcher(Searcher):
    """Two searchers, each asked for ``depth`` hits, fused (the service's and the API's hybrid)."""

    def __init__(self, first: Searcher, second: Searcher, weight: float = 0.5, mode: str = "rrf",
                 depth: int = 100):
        self.first, self.second, self.weight, self.mode, self.depth = first, second, weight, mode, depth
        self.name = f"{first.name}+{second.name}"

    def batch_search(self, queries: Mapping[str, str], k: int = 100) -> Results:
        depth = max(k, self.depth)
        return fuse(self.first.batch_search(queries, depth), self.second.batch_search(queries, depth),
                    self.weight, self.mode, k)
