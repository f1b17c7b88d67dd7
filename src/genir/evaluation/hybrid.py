"""``search.hybrid`` rows: two systems' run files of a run fused (RRF or interpolation) and evaluated, each its
own row beside the pure ones. Cheap and never cached: a row always matches the settings shown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from genir.evaluation.metrics import evaluate
from genir.evaluation.trec import read_run
from genir.search.fusion import fuse


def hybrid_rows(search: Any, done: dict[str, dict], run_file: Callable[[str, dict], Path],
                queries: dict[str, str], qrels: dict, subsets: dict) -> list[dict]:
    """One row per ``search.hybrid`` pair "a+b" of the systems in ``done`` (name -> result row);
    ``run_file(name, row)`` is where that system's TREC run lies."""
    rows = []
    for pair in search.hybrid:
        a, sep, b = pair.partition("+")
        if not sep or a not in done or b not in done:
            raise ValueError(f"search.hybrid {pair!r}: give two systems of this run as a+b "
                             f"(this run has {', '.join(done)})")
        fused = fuse(*(read_run(run_file(x, done[x])) for x in (a, b)), weight=search.hybrid_weight,
                     mode=search.hybrid_mode, k=search.k)
        fused = {q: fused.get(q, []) for q in queries}
        rows.append({"name": pair, "kind": "hybrid", "metrics": evaluate(fused, qrels, subsets=subsets),
                     "label": f"Hybrid: {a} + {b} ({search.hybrid_mode}, weight {search.hybrid_weight:g} on {a})"})
    return rows
