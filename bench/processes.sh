#!/usr/bin/env bash
# Wall time of one training epoch (and of the frozen-encoder cache, sharded across processes) on SciFact
# with 1 and 2 processes, 1 thread each (`torchrun --nproc_per_node N`), the same global batch (64): the
# same steps, so the same model; only the wall time may differ.
#   bash bench/processes.sh [OUT]      (default bench_runs/processes)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench_runs/processes}
mkdir -p "$OUT"
for n in 1 2; do
  OMP_NUM_THREADS=1 .venv/bin/torchrun --standalone --nproc_per_node "$n" -m genir.cli run --dataset scifact \
    --method dsi-atomic --no-baselines --epochs 1 --batch-size $((64 / n)) --set training.checkpoint_every=0 \
    --max-test-queries 50 --beam 10 --out "$OUT/procs-$n" > "$OUT/procs-$n.log" 2>&1
done
.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = []
for n in (1, 2):
    t = json.loads((out / f"procs-{n}" / "dsi-atomic" / "train.json").read_text())
    r = json.loads((out / f"procs-{n}" / "report.json").read_text())
    m = r["systems"][0]["metrics"]["full"]
    rows.append(f"| {n} | {t['seconds']:.1f} | {t['steps']} | {t['encode_seconds']:.1f} | {m['nDCG@10']:.4f} |")
text = "\n".join(["| processes | epoch s | steps | frozen-encoder cache s | nDCG@10 (50 queries) |",
                  "|---|---|---|---|---|", *rows])
(out / "processes.md").write_text(text + "\n")
print(text)
PY
