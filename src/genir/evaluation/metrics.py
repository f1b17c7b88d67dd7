"""Retrieval metrics through ir_measures (pytrec_eval underneath).

Two choices, made explicit:
- Every query with a relevant document counts; a query the run misses scores 0 (pytrec_eval alone would
  silently drop it from the mean).
- The searcher's order is the ranking: documents that share a docid come back tied, and the searcher's
  tie-break decides their order, so scores given to ir_measures are derived from the rank.
"""

from __future__ import annotations

from collections.abc import Iterable

import ir_measures

from genir.data.collection import Qrels
from genir.search.base import Results

# report name -> ir_measures measure
DEFAULT_MEASURES = {
    "R@1": "R@1", "R@10": "R@10", "R@100": "R@100",
    "MRR@10": "RR@10", "MRR@100": "RR@100",
    "nDCG@10": "nDCG@10", "nDCG@100": "nDCG@100",
}


def _rank_scored(results: Results) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for qid, hits in results.items():
        scored: dict[str, float] = {}
        for rank, hit in enumerate(hits):
            scored.setdefault(hit.doc_id, float(len(hits) - rank))
        run[qid] = scored
    return run


def per_query(results: Results, qrels: Qrels, measures: dict[str, str] | None = None,
              query_ids: Iterable[str] | None = None) -> dict[str, dict[str, float]]:
    """query id -> {measure: value} for every judged query (or ``query_ids``), 0 where the run has none."""
    measures = measures or DEFAULT_MEASURES
    parsed = {name: ir_measures.parse_measure(m) for name, m in measures.items()}
    by_measure = {str(m): name for name, m in parsed.items()}
    judged = [q for q, r in qrels.items() if any(g > 0 for g in r.values())]
    qids = [q for q in (query_ids if query_ids is not None else judged) if q in set(judged)]
    out = {q: dict.fromkeys(measures, 0.0) for q in qids}
    run = {q: d for q, d in _rank_scored(results).items() if q in out and d}
    sub_qrels = {q: qrels[q] for q in qids}
    for m in ir_measures.iter_calc(list(parsed.values()), sub_qrels, run):
        out[m.query_id][by_measure[str(m.measure)]] = float(m.value)
    return out


def evaluate(results: Results, qrels: Qrels, measures: dict[str, str] | None = None,
             subsets: dict[str, Iterable[str]] | None = None) -> dict[str, dict[str, float]]:
    """subset name -> {measure: mean}; the subset "full" (all judged queries) is always there.

    Each subset also carries ``n`` (its number of queries).
    """
    pq = per_query(results, qrels, measures)
    names = list(measures or DEFAULT_MEASURES)
    groups = {"full": list(pq)}
    for name, ids in (subsets or {}).items():
        keep = set(ids)
        groups[name] = [q for q in pq if q in keep]
    out = {}
    for name, qids in groups.items():
        row = {m: (sum(pq[q][m] for q in qids) / len(qids) if qids else float("nan")) for m in names}
        row["n"] = len(qids)
        out[name] = row
    return out
