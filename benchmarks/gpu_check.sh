#!/usr/bin/env bash
# GPU checks for a lent device (at most 8 minutes on one H100/H200): the backbone step, then the
# real training path of a text spec and of the published masked Sudoku model (one worker, NCCL),
# recorded under benchmarks/results/ with device, date and commit.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
stamp=$(date -u +%Y%m%d)
$PY benchmarks/pipeline_throughput.py experiments/text/local-mdlm.yaml --steps 200 \
    --set resources.workers=1 --set resources.gpus_per_worker=1 --set train.precision=bf16 --set train.compile=true \
    --out "benchmarks/results/pipeline-gpu-$stamp.md"
$PY benchmarks/throughput.py --size small --batch 32 --seq-len 1024 --steps 20 --warmup 5 \
    --device cuda --precision bf16 --compile --out "benchmarks/results/throughput-gpu-$stamp.md"
$PY benchmarks/pipeline_throughput.py experiments/sudoku/published-masked.yaml --steps 300 \
    --set resources.workers=1 --set resources.gpus_per_worker=1 --set resources.backend=nccl \
    --out "benchmarks/results/pipeline-gpu-sudoku-$stamp.md"
