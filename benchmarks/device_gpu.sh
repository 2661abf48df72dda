#!/usr/bin/env bash
# The one prepared command for a lent GPU machine (the `device` tool): the paper-length runs of the
# default recipe (both variants, seeds 0 1 2, concurrent on one GPU), seed 0 as the whole default
# pipeline timed (the GPU figure of docs/performance.md), and the quick-recipe search, in one call.
# That machine has torch, numpy, pandas, pyarrow, pyyaml, seaborn, jinja2, tqdm but no
# DVC/Prefect/MLflow, so the stages run as plain `python -m pipeline <stage>` (benchmarks/paper_gpu.py).
#
#   here:    mkdir -p .device && cp "$CIFAR10_ARCHIVE" .device/cifar10-jpeg.zip   # 59 MiB, git-ignored
#            .venv/bin/pip download --no-deps relplot==1.0.3 deprecation==2.1.0 -d .device/whl  # stage certify
#   device:  run(command="bash benchmarks/device_gpu.sh", carry=[".device"], timeout_s=595)
#   here:    python -m benchmarks.import_paper <files_at>   # -> results/paper/ (see results/paper/README.md)
#
# DEADLINE_S (default 545) stops what is left and packs it, checkpoints included; a call right after,
# on the still-warm machine, with RESUME=1 goes on from those checkpoints.
set -uo pipefail
export PYTHONPATH="$PWD/src:$PWD" PYTHONUNBUFFERED=1 CIFAR10_ARCHIVE="$PWD/.device/cifar10-jpeg.zip"
OUT="${OUT:-$PWD/build/device-out}"
mkdir -p "$OUT"
# The certify stage needs relplot (and its dependency deprecation), which that machine lacks: pure-Python
# wheels carried in .device/whl are installed into /tmp/site.
if ls .device/whl/*.whl >/dev/null 2>&1; then
    python -m pip install -q --no-index --no-deps --target /tmp/site .device/whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
if [ ! -f "$CIFAR10_ARCHIVE" ]; then
    echo "device_gpu.sh: $CIFAR10_ARCHIVE is missing: copy the archive there and carry .device" >&2
    exit 2
fi
# $OUT holds at most 8 files: 6 tarballs, logs.tgz and paper_gpu.log (this header included).
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import torch, os; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cpus', os.cpu_count())"
  nproc; free -g | head -2; } 2>&1 | tee "$OUT/paper_gpu.log"
if [ "${RESUME:-0}" = 1 ]; then
    python -m benchmarks.paper_gpu --out "$OUT" --resume --deadline-s "${DEADLINE_S:-545}" 2>&1 | tee -a "$OUT/paper_gpu.log"
else
    python -m benchmarks.paper_gpu --out "$OUT" --search --deadline-s "${DEADLINE_S:-545}" 2>&1 | tee -a "$OUT/paper_gpu.log"
fi
exit "${PIPESTATUS[0]}"
