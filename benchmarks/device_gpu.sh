#!/usr/bin/env bash
# The one prepared command for a lent GPU machine (the `device` tool): the GPU figure of
# docs/performance.md (section 5) and the paper-length results, in one call. That machine has
# torch, numpy, pandas, pyarrow, pyyaml, seaborn, jinja2, tqdm but no DVC/Prefect/MLflow, so the
# stages run through `pipeline.plain_run`.
#
#   here:    mkdir -p .device && cp "$CIFAR10_ARCHIVE" .device/cifar10-jpeg.zip   # 59 MiB, git-ignored
#   device:  run(command="bash benchmarks/device_gpu.sh", carry=[".device"], timeout_s=590)
#   here:    mkdir -p build/gpu && tar xzf <files_at>/results.tgz -C build/gpu   # then see section 5
#
# A call cut short by its time limit keeps build/bench-gpu on the warm machine: run it again with
# RESUME=1 and training resumes from its last epoch checkpoint (the figure is then not a clean time).
set -uo pipefail
export PYTHONPATH="$PWD/src:$PWD" PYTHONUNBUFFERED=1 CIFAR10_ARCHIVE="$PWD/.device/cifar10-jpeg.zip"
OUT="${OUT:-$PWD/build/device-out}"
mkdir -p "$OUT"
if [ ! -f "$CIFAR10_ARCHIVE" ]; then
    echo "device_gpu.sh: $CIFAR10_ARCHIVE is missing: copy the archive there and carry .device" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/device.txt"
if [ "${RESUME:-0}" = 1 ] && [ -d build/bench-gpu ]; then
    (cd build/bench-gpu && PYTHONPATH="$PWD/src:$PWD" python -m pipeline.plain_run) 2>&1 | tee "$OUT/gpu.log"
else
    python -m benchmarks gpu --dest build/bench-gpu 2>&1 | tee "$OUT/gpu.log"
fi
rc=${PIPESTATUS[0]}
tar czf "$OUT/results.tgz" -C build/bench-gpu --exclude=data/prepared --exclude=data/checkpoints \
    params.yaml data reports 2>/dev/null
ls -la "$OUT"
exit "$rc"
