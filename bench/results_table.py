"""One table from run folders: every row's nDCG@10 on SciFact full / seen / unseen, R@100, and Cranfield
nDCG@10 / R@100, each cell read from the ``report.json`` of the run that measured it, with the command
that reproduces the row. Rows measured over several seeds show mean +- spread (half the range); the seeds
column counts the runs behind each collection's cells (SciFact; Cranfield).

    python bench/results_table.py bench/results_rows.json > table.md

The rows file is a JSON list of ``{"label", "scifact": {"runs": [REPORT, ...], "system": NAME},
"cranfield": {...}, "command": TEXT}``; a dataset not run is "-", a missing report or system is marked as
such (never a number from elsewhere).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def cells(spec: dict | None, base: Path, subsets: list[str]) -> list[str]:
    if not spec:
        return ["-" for _ in subsets] + ["-"]
    values: dict[str, list[float]] = {s: [] for s in [*subsets, "R@100"]}
    for run in spec["runs"]:
        path = base / run
        if not path.exists():
            return [f"(missing: {run})"] + ["" for _ in subsets]
        systems = {s["name"]: s for s in json.loads(path.read_text())["systems"]}
        metrics = (systems.get(spec["system"]) or {}).get("metrics")
        if not metrics:
            return [f"(not in {run})"] + ["" for _ in subsets]
        for s in subsets:
            if s in metrics:
                values[s].append(metrics[s]["nDCG@10"])
        values["R@100"].append(metrics["full"]["R@100"])

    def show(v: list[float]) -> str:
        if not v:
            return ""
        if len(v) == 1:
            return f"{v[0]:.3f}"
        return f"{statistics.mean(v):.3f} ± {(max(v) - min(v)) / 2:.3f}"
    return [show(values[s]) for s in [*subsets, "R@100"]]


def main() -> None:
    rows_file = Path(sys.argv[1])
    base = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(".")
    rows = json.loads(rows_file.read_text())
    out = ["| system | SciFact full | seen | unseen | R@100 | Cranfield full | R@100 | seeds | reproduce |",
           "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        sci = cells(row.get("scifact"), base, ["full", "seen", "unseen"])
        cran = cells(row.get("cranfield"), base, ["full"])
        seeds = "; ".join(str(len(row[d]["runs"])) if row.get(d) else "-" for d in ("scifact", "cranfield"))
        out.append(f"| {row['label']} | " + " | ".join(sci + cran) + f" | {seeds} | {row.get('command', '')} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
