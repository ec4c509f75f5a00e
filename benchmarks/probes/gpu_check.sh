#!/usr/bin/env bash
# The GPU paths on a lent CUDA machine (CI has no GPU; BENCHMARKS 2.0.8):
#   1. the suite's GPU tests (tests/test_cuda.py);
#   2. real time budgets on the GPU, alone: a run to the end, then a run interrupted with
#      SIGINT (Ctrl-C) and resumed with what is left of its budget;
#   3. torchrun with more processes than GPUs: one line, exit 2;
#   4. (SEARCH_S > 0) CIFAR-10 runs side by side at the epochs a 2-core CPU fits into 30 and
#      60 minutes, to choose between model widths without spending CPU hours (the GPU only
#      makes the search faster; what it finds is then timed on the CPU).
# Usage: CIFAR_TAR=path/to/cifar10-train-jpg.tar.gz OUT=out_dir bash benchmarks/probes/gpu_check.sh
# (DEVICE=cpu BUDGET=20s SEARCH_S=0 DATA=small_folder dry-runs the script on a CPU.)
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-runs/gpu_check}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-45s}
KILL_AFTER=${KILL_AFTER:-35}
SEARCH_S=${SEARCH_S:-270}
mkdir -p "$OUT"
S="$OUT/summary.txt"
say() { echo "$*" | tee -a "$S"; }
budget_line() { grep -m1 '^- time budget' "$1/report.md" 2>/dev/null | sed 's/;.*//' ; grep -m1 'of the time budget' "$1/report.md" | sed 's/.*batch/batch/'; grep -m1 'final test top-1 |' "$1/report.md"; }
train() { $PY -m squeezenet train --data "$DATA" --device "$DEVICE" --no-progress "$@"; }

say "== machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo no GPU)"
say "$($PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())')"
say "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) x $(nproc)"

if [ -z "${DATA:-}" ]; then
  mkdir -p /tmp/cifar && tar -xzf "$CIFAR_TAR" -C /tmp/cifar && DATA=/tmp/cifar/train
fi
R=/tmp/gpu_check_runs; rm -rf "$R"; mkdir -p "$R"

say "== 1. tests/test_cuda.py"
$PY -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py > "$OUT/pytest.txt" 2>&1; say "$(tail -3 "$OUT/pytest.txt")"

say "== 2a. a $BUDGET budget on $DEVICE, alone"
t0=$SECONDS
train --time-budget "$BUDGET" --out "$R/b" > "$R/b.log" 2>&1; say "exit $?, wall $((SECONDS - t0)) s (data loading included)"
say "$(budget_line "$R/b")"; cp "$R/b/report.md" "$OUT/budget_report.md" 2>/dev/null; cp "$R/b/last.pt" "$OUT/budget_last.pt" 2>/dev/null
tail -2 "$R/b.log" >> "$S"

say "== 2b. the same budget, Ctrl-C after ${KILL_AFTER} s of wall time, then --resume"
timeout -s INT "$KILL_AFTER" $PY -m squeezenet train --data "$DATA" --device "$DEVICE" --no-progress \
  --time-budget "$BUDGET" --out "$R/r" > "$R/r1.log" 2>&1; say "first part: exit $?: $(tail -1 "$R/r1.log")"
$PY -m squeezenet train --resume --out "$R/r" > "$R/r2.log" 2>&1; say "resumed: exit $?"
say "$(budget_line "$R/r")"; cp "$R/r/report.md" "$OUT/resumed_report.md" 2>/dev/null

say "== 3. torchrun with 2 processes on $DEVICE ($($PY -c 'import torch; print(torch.cuda.device_count())') GPU(s))"
$PY -m torch.distributed.run --standalone --nproc_per_node=2 -m squeezenet train --data "$DATA" --device "$DEVICE" \
  --no-progress --epochs 1 --out "$R/t2" > "$R/t2.log" 2>&1; say "exit $?"
grep -m2 -i 'error\|needs GPU' "$R/t2.log" | cut -c1-300 >> "$S"

if [ "$SEARCH_S" -gt 0 ]; then
  say "== 4. width search, $SEARCH_S s cap per run, side by side"
  B=squeezenet1_1_simple_bypass_small_bn
  job() {  # name, then train flags
    local name=$1; shift
    timeout "$SEARCH_S" $PY -m squeezenet train --data "$DATA" --device "$DEVICE" --no-progress --threads 1 --config natural \
      --out "$R/$name" "$@" > "$R/$name.log" 2>&1
    echo "$name: exit $?; $(tail -1 "$R/$name/metrics.csv" 2>/dev/null | cut -c1-200)" >> "$S"
  }
  # epochs a 2-core AMD EPYC (AVX-512, bf16) fits: natural (w0.5 sr0.25) 55 in 30 min; full width 1.8x slower
  job n30 --epochs 55 &
  job f30 $B --epochs 31 &
  job f60 $B --epochs 62 &
  job f60re $B --epochs 62 --random-erasing 0.25 &
  wait
  say "metrics.csv columns: $(head -1 "$R/n30/metrics.csv" 2>/dev/null)"
  (cd "$R" && tar -czf "$OUT/search_metrics.tgz" ./*/metrics.csv ./*/report.md 2>/dev/null)
fi
say "== done"
