"""Statistics of docids against relevance judgements, for any multi-level docid scheme."""

from __future__ import annotations

from genir.docids.rqvae import distinct_codes_per_level
from genir.docids.table import DocIdTable


def docid_relevance(table: DocIdTable, test_qrels: dict, train_qrels: dict | None = None) -> dict:
    """Distinct codes per docid level among each query's relevant documents (queries with at least two
    relevant documents; MERGE Table 3: lower = they share more of their docids), on test and training queries."""
    index = {d: i for i, d in enumerate(table.doc_ids)}
    out = {"test": distinct_codes_per_level(table.codes, index, test_qrels)}
    if train_qrels:
        out["train"] = distinct_codes_per_level(table.codes, index, train_qrels)
    return out
