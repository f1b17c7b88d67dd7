"""A trained folder copied out of its run searches as the run measured it: every test query, diffed.

    python bench/folder_roundtrip.py runs/scifact --name dsi-atomic --name bm25 [--cli-queries 3]

Each folder (RUN/NAME, or RUN/baselines/NAME for a baseline) is copied into a fresh temporary folder with no
run around it, opened with ``Retriever.load`` and searched for every test query of the run's dataset at the
run's k; the ranking is compared with the run's TREC file (document order, largest score difference). The
first ``--cli-queries`` queries also go through ``genir search COPY "query"`` in a subprocess.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    from genir.data import load_dataset
    from genir.evaluation import read_run
    from genir.retriever import Retriever

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", action="append", required=True)
    ap.add_argument("--cli-queries", type=int, default=3)
    args = ap.parse_args()
    for name in args.name:
        baseline = (args.run / "baselines" / name).is_dir()
        source = args.run / "baselines" / name if baseline else args.run / name
        run_file = args.run / "baselines" / f"{name}.trec" if baseline else source / f"{name}.trec"
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "elsewhere" / name
            shutil.copytree(source, copy, ignore=shutil.ignore_patterns("checkpoints"))
            retriever = Retriever.load(copy)
            settings, recorded = retriever.settings, retriever.record.get("dataset") or {}
            coll = load_dataset(recorded.get("path") or settings.data.dataset, settings.data.data_dir,
                                settings.data.qrels_dir)
            queries = {q: coll.queries[q] for q in read_run(run_file)}
            expected = read_run(run_file)
            got = retriever.batch_search(queries, settings.search.k)
            same = sum([h.doc_id for h in got[q]] == [h.doc_id for h in expected[q]] for q in expected)
            diff = max((abs(a.score - b.score) for q in expected for a, b in zip(got[q], expected[q], strict=False)),
                       default=0.0)
            cli_same = 0
            for q in list(queries)[: args.cli_queries]:
                out = subprocess.run([sys.executable, "-m", "genir.cli", "search", str(copy), queries[q], "--k",
                                      str(settings.search.k)], capture_output=True, text=True, check=True).stdout
                hits = json.loads(out[out.index('{"query"'):].splitlines()[0])["hits"]
                cli_same += [h[0] for h in hits] == [h.doc_id for h in expected[q]]
            print(f"{name}: copied to a folder with no run around it; Python API: {same}/{len(expected)} queries "
                  f"ranked as the run file (largest score difference {diff:.1e}); genir search: "
                  f"{cli_same}/{min(args.cli_queries, len(expected))}")


if __name__ == "__main__":
    main()
