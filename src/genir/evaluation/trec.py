"""TREC run files: ``qid Q0 docid rank score tag``, one line per hit."""

from __future__ import annotations

import math
from pathlib import Path

from genir.data.collection import DataError, numbered_lines
from genir.io import atomic_path
from genir.search.base import Hit, Results


def write_run(results: Results, path: str | Path, tag: str = "genir") -> None:
    """Written to a temporary file and renamed, so a reader never sees half a run.

    Scores are made strictly decreasing in the searcher's order: TREC tools rank by score and break ties
    by document id, so tied scores (documents sharing a docid) would be re-ordered and scored differently
    from the report. A score not clearly below the one before is lowered just enough."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for qid, hits in results.items():
            for rank, (hit, score) in enumerate(zip(hits, strictly_decreasing([h.score for h in hits]),
                                                    strict=True), 1):
                f.write(f"{qid} Q0 {hit.doc_id} {rank} {score:.10g} {tag}\n")


def strictly_decreasing(scores: list[float]) -> list[float]:
    """The scores, each at least one part in a million below the one before (trec_eval compares scores in
    single precision, so a smaller step would read as a tie), printed with 10 significant digits."""
    out, prev = [], math.inf
    for s in scores:
        s = _short(s) if math.isfinite(s) else (-1e30 if s != s or s < 0 else 1e30)
        if prev != math.inf and s > prev - max(abs(prev) * 1e-6, 1e-30):
            step = max(abs(prev) * 1e-6, 1e-30)
            s = _short(prev - step)
            while s >= prev:  # rounding to 10 digits can undo a small step
                step *= 2
                s = _short(prev - step)
        out.append(s)
        prev = s
    return out


def _short(x: float) -> float:
    return float(f"{x:.10g}")


def read_run(path: str | Path) -> Results:
    """Hits per query in rank order (the rank column decides, as the writer meant it)."""
    path = Path(path)
    rows: dict[str, list[tuple[int, Hit]]] = {}
    for line_no, line in numbered_lines(path):
        cols = line.split()
        if len(cols) != 6:
            raise DataError(path, line_no, f"expected 6 columns (qid Q0 docid rank score tag), got {len(cols)}")
        try:
            rank, score = int(cols[3]), float(cols[4])
        except ValueError:
            raise DataError(path, line_no, "rank must be an integer and score a number") from None
        if not math.isfinite(score):
            raise DataError(path, line_no, f"score {cols[4]!r} is not finite")
        rows.setdefault(cols[0], []).append((rank, Hit(cols[2], score)))
    if not rows:
        raise DataError(path, None, "the run file holds no result line")
    return {q: [h for _, h in sorted(r, key=lambda x: x[0])] for q, r in rows.items()}
