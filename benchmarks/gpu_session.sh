#!/usr/bin/env bash
# Everything a session lent a GPU should run: the CUDA tests, the stage-1 benchmark at
# the paper configuration, and ensemble dimension against vmap. Works from a source
# checkout without installing (PYTHONPATH=src), with whatever torch the machine has.
#
#   bash benchmarks/gpu_session.sh [OUT_DIR]          # OUT_DIR: default $OUT, else benchmarks/results
#
# Environment:
#   STAGES         which stages, in order (default "tests bench vmap"). Under a per-command
#                  time limit run them as separate calls: STAGES=tests, then STAGES="bench vmap".
#   STAGE_TIMEOUT  seconds each stage may take (default 540); a stage past it fails alone.
#   BENCH_DEVICE (cuda), BENCH_CONFIG (paper), BENCH_STEPS (20), BENCH_SEEDS (8).
# Exit status: non-zero if any stage failed.
set -uo pipefail
out=$(realpath -m "${1:-${OUT:-benchmarks/results}}")  # before cd: relative to the caller
cd "$(dirname "$0")/.."
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
device=${BENCH_DEVICE:-cuda}
config=${BENCH_CONFIG:-paper}
seeds=${BENCH_SEEDS:-8}
limit=${STAGE_TIMEOUT:-540}

python3 - <<'PY' || exit 1
import torch
print("torch", torch.__version__, "| cuda", torch.version.cuda,
      "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")
PY

slug=$(python3 -c "
import re, torch
name = torch.cuda.get_device_name() if '$device' == 'cuda' and torch.cuda.is_available() else 'cpu'
print(re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-') or 'unknown-device')")

status=0
run_stage() {  # name, log file, command...
    local name=$1 log=$2
    shift 2
    echo "== $name (at most $limit s) =="
    timeout "$limit" "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] && echo "== $name: stopped after $limit s =="
    [ "$rc" = 0 ] || status=1
}

for stage in ${STAGES:-tests bench vmap}; do
    case $stage in
        tests) run_stage tests "$out/gpu-tests.log" \
                   python3 -m pytest -q -p no:cacheprovider -m cuda tests/gpu tests/augment ;;
        bench) run_stage bench "$out/bench-$config.log" \
                   python3 -m cffaudit bench --device "$device" --config "$config" \
                   --steps "${BENCH_STEPS:-20}" --warmup 3 --seeds "$seeds" --json "$out/$(date +%F)-$slug-$config.json" ;;
        vmap) run_stage vmap "$out/ensemble-vs-vmap-$config.txt" \
                  python3 benchmarks/ensemble_vs_vmap.py --device "$device" --config "$config" --seeds "$seeds" --reps 5 ;;
        *) echo "unknown stage $stage (tests, bench, vmap)"; status=1 ;;
    esac
done
exit $status
