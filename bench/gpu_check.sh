#!/usr/bin/env bash
# The GPU check of issue 13, in two device calls made back to back (the machine stays warm ~30 s between
# calls and keeps /tmp), because the payload is over one call's 64 MiB (see bench/gpu_prepare.sh):
#
#   run(command="bash bench/gpu_check.sh install", carry=[".whl"], timeout_s=180)
#   run(command="bash bench/gpu_check.sh run",     carry=[".gpu"], timeout_s=540)
#
# `run` (8 minutes at most on one GPU): the tests that touch devices on cuda, training throughput
# (examples/s) of each method frozen vs full on a SciFact slice, and one short full fine-tuning run of
# Tied-Atomic with its nDCG@10. Everything it measures is written under $OUT (and printed).
# On a machine without a GPU, `DEVICE=cpu bash bench/gpu_check.sh run` runs the same half on the CPU
# (with the bundled MiniLM when .gpu/ is absent).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench_runs/gpu_check}
mkdir -p "$OUT"
SITE=/tmp/genir-site
case "${1:-run}" in
install)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    || exit 1
  echo "installed into $SITE:"; ls "$SITE" | head -40
  exit 0 ;;
run) ;;
*) echo "usage: gpu_check.sh install|run" >&2; exit 2 ;;
esac
export PYTHONPATH="$PWD/src:$PWD${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && [ "${DEVICE:-cuda}" = cpu ] && PY=.venv/bin/python
DEVICE=${DEVICE:-cuda}
DATASETS=${GENIR_DATASETS:-$PWD/.gpu/datasets}  # bench/gpu_prepare.sh copies SciFact there
[ -d "$DATASETS/scifact" ] || DATASETS=$PWD/../shared/datasets
export GENIR_DATASETS=$DATASETS
BACKBONE=minilm
[ -f .gpu/minilm/model.safetensors ] && BACKBONE=$PWD/.gpu/minilm
{
  echo "== device"; $PY - <<'PY'
import torch, transformers
print("torch", torch.__version__, "transformers", transformers.__version__)
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "-")
PY
  echo "== tests that touch devices ($DEVICE)"
  GENIR_TEST_DEVICE=$DEVICE timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_devices.py \
    tests/test_full_finetuning.py 2>&1 | tail -5
  echo "== throughput, frozen vs full ($DEVICE)"
  timeout 240 $PY bench/throughput.py --docs 400 --device "$DEVICE" --backbone "$BACKBONE" --batch-size 32 \
    --out "$OUT/throughput" 2>&1 | grep -v "it/s\]\|s/it\]" | tail -12
  echo "== short full fine-tuning run: tied-atomic on SciFact ($DEVICE)"
  timeout 150 $PY -m genir.cli run --dataset scifact --method tied-atomic --no-baselines --encoder full \
    --device "$DEVICE" --backbone "$BACKBONE" --epochs 2 --batch-size 64 --set training.encoder_lr=2e-5 \
    --set dense.model="$BACKBONE" --out "$OUT/tied-full" 2>&1 | grep -v "it/s\]\|s/it\]" | tail -5
  grep -A12 "^| system" "$OUT/tied-full/report.md" | head -14
} 2>&1 | tee "$OUT/gpu_check.log"
