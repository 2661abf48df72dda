#!/usr/bin/env bash
# The one prepared command of the accuracy-regime study for a lent GPU machine (the `device` tool):
# the recipe search of configs/recipes/search.yaml, the rule, and the chosen recipe's seeds x both
# variants, as concurrent processes on one GPU (benchmarks/recipe_gpu.py). That machine has torch
# and the data stack but no DVC/Prefect/MLflow: the stages run as plain `python -m pipeline ...`.
#
#   here:    mkdir -p .device && cp "$CIFAR10_ARCHIVE" .device/cifar10-jpeg.zip   # 59 MiB, git-ignored
#   device:  run(command="bash benchmarks/device_recipes.sh", carry=[".device"], timeout_s=600)
#   here:    python -m pipeline paper import <files_at> --bundle results/<recipe> --commit <sha>
#
# DEADLINE_S (default 565, the throughput probe included) stops what is left and packs it, checkpoints
# included.
set -uo pipefail
export PYTHONPATH="$PWD/src:$PWD" PYTHONUNBUFFERED=1 CIFAR10_ARCHIVE="$PWD/.device/cifar10-jpeg.zip"
OUT="${OUT:-$PWD/build/device-out}"
mkdir -p "$OUT"
if [ ! -f "$CIFAR10_ARCHIVE" ]; then
    echo "device_recipes.sh: $CIFAR10_ARCHIVE is missing: copy the archive there and carry .device" >&2
    exit 2
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import torch, os; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cpus', os.cpu_count())"
} 2>&1 | tee "$OUT/recipe_gpu.log"
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 5 >"$OUT/gpu_util.csv" 2>&1 &
sampler=$!
# Throughput first (issue 23: batched trainer vs separate processes, images/s and fraction of the bf16
# peak), bounded to THROUGHPUT_S (default 75 s); the study gets what is left of DEADLINE_S.
start=$SECONDS
if [ "${THROUGHPUT_S:-75}" -gt 0 ]; then
    timeout "${THROUGHPUT_S:-75}" python -m benchmarks.gpu_throughput --out "$OUT" --seconds "${THROUGHPUT_SECONDS:-10}" \
        ${THROUGHPUT_ARGS:-} 2>&1 | tee -a "$OUT/recipe_gpu.log"
fi
python -m benchmarks.recipe_gpu --out "$OUT" --deadline-s "$(( ${DEADLINE_S:-565} - (SECONDS - start) ))" ${RECIPE_GPU_ARGS:-} 2>&1 | tee -a "$OUT/recipe_gpu.log"
rc=${PIPESTATUS[0]}
kill "$sampler" 2>/dev/null
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >>"$OUT/recipe_gpu.log" 2>&1
exit "$rc"
