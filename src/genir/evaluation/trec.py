"""TREC run files: ``qid Q0 docid rank score tag``, one line per hit."""

from __future__ import annotations

from pathlib import Path

from genir.data.collection import DataError, numbered_lines
from genir.io import atomic_path
from genir.search.base import Hit, Results


def write_run(results: Results, path: str | Path, tag: str = "genir") -> None:
    """Written to a temporary file and renamed, so a reader never sees half a run."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for qid, hits in results.items():
            for rank, hit in enumerate(hits, 1):
                f.write(f"{qid} Q0 {hit.doc_id} {rank} {hit.score:.6g} {tag}\n")


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
        rows.setdefault(cols[0], []).append((rank, Hit(cols[2], score)))
    return {q: [h for _, h in sorted(r, key=lambda x: x[0])] for q, r in rows.items()}
