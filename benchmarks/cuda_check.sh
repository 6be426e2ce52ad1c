#!/usr/bin/env bash
# One prepared CUDA check for a lent GPU machine (torch/torchvision preinstalled there):
# every CUDA-marked test, then the benchmarks with their CUDA rows, then a Lecture 12 example on the GPU.
# Usage: bash benchmarks/cuda_check.sh OUT_DIR      (wheels for missing packages may be in .whl/)
set -uo pipefail
out=${1:-cuda-check}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 LECTURES_DEVICE=cuda
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$out/gpu.txt"

# Tests whose reference library is absent there (gradio, mkdocs) are not collected.
timeout 300 python3 -m pytest tests/lecture12 tests/detection -m cuda -q -p no:cacheprovider \
  --continue-on-collection-errors -o addopts="--import-mode=importlib" 2>&1 | tail -25 | tee "$out/cuda-tests.txt"

for bench in box_ops roi_ops; do
  timeout 120 python3 "benchmarks/$bench.py" > "$out/$bench.log" 2>&1
  cp "benchmarks/results/$bench.md" "$out/$bench.md" 2>/dev/null
  cp "benchmarks/results/$bench.json" "$out/$bench.json" 2>/dev/null
done
timeout 60 python3 -m lectures_code run parallel-block --steps 500 --device cuda --quiet | tee "$out/lecture12-cuda.txt"
timeout 60 python3 -m lectures_code run parallel-block --steps 500 --device cpu --quiet | tee -a "$out/lecture12-cuda.txt"
