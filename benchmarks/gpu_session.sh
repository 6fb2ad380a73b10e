#!/usr/bin/env bash
# Everything a session lent a GPU should run, in one command: the CUDA tests, then the
# stage-1 benchmark at the paper configuration, then ensemble dimension against vmap. Works from a source checkout without
# installing (PYTHONPATH=src), with whatever torch the machine has.
#
#   bash benchmarks/gpu_session.sh [OUT_DIR]          # OUT_DIR: default $OUT, else benchmarks/results
#
# Environment: BENCH_DEVICE (cuda), BENCH_CONFIG (paper), BENCH_STEPS (20), BENCH_SEEDS (8),
# SKIP_TESTS=1 to run the benchmark alone. Exit status: non-zero if the tests or the benchmark failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-benchmarks/results}}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
device=${BENCH_DEVICE:-cuda}
config=${BENCH_CONFIG:-paper}

python3 - <<'PY' || exit 1
import torch
print("torch", torch.__version__, "| cuda", torch.version.cuda,
      "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")
PY

status=0
if [ "${SKIP_TESTS:-0}" != 1 ]; then
    python3 -m pytest -q -p no:cacheprovider -m cuda tests/gpu tests/augment 2>&1 | tee "$out/gpu-tests.log"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi

slug=$(python3 -c "
import re, torch
name = torch.cuda.get_device_name() if '$device' == 'cuda' and torch.cuda.is_available() else 'cpu'
print(re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-'))")
json="$out/$(date +%F)-$slug-$config.json"
python3 -m cffaudit.cli bench --device "$device" --config "$config" --steps "${BENCH_STEPS:-20}" --warmup 3 \
    --seeds "${BENCH_SEEDS:-8}" --json "$json" 2>&1 | tee "$out/bench-$config.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

# The issue's other open question on a GPU: ensemble dimension against vmap over S models.
python3 benchmarks/ensemble_vs_vmap.py --device "$device" --config "$config" --seeds "${BENCH_SEEDS:-8}" --reps 5 \
    2>&1 | tee "$out/ensemble-vs-vmap-$config.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
exit $status
