#!/usr/bin/env bash
# Recipe search on a lent CUDA machine: many `squeezenet train` jobs side by side on
# one GPU (the GPU only speeds the search up; the chosen demo recipe is then timed on
# the 2-core CPU). Round 1 and round 2 results are in docs/BENCHMARKS.md.
# Usage: DATA_DIR=path/to/fashion-mnist OUT=out_dir bash benchmarks/probes/gpu_recipe_search.sh [round]
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-runs/gpu}
DATA_DIR=${DATA_DIR:-/usr/share/datasets/fashion-mnist}
ROUND=${1:-2}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
run() {  # name, then train flags
  local name=$1; shift
  python3 -m squeezenet train --data-dir "$DATA_DIR" --no-download --device cuda --threads 1 --no-progress \
    --out "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
  echo "$name: $(tail -1 "$OUT/$name.log")"
  cp "$OUT/$name/metrics.csv" "$OUT/$name.metrics.csv" 2>/dev/null; rm -rf "$OUT/$name"
}
B=squeezenet1_1_simple_bypass_small_bn
if [ "$ROUND" = 1 ]; then
  run demo_lr0.2   squeezenet1_1_small_bn_w0.5 --epochs 9 --lr 0.2 &
  run demo_lr0.1   squeezenet1_1_small_bn_w0.5 --epochs 9 --lr 0.1 &
  run demo_lr0.4   squeezenet1_1_small_bn_w0.5 --epochs 9 --lr 0.4 &
  run demo_bypass  ${B}_w0.5 --epochs 9 --lr 0.2 &
  run demo_drop0.2 squeezenet1_1_small_bn_w0.5 --epochs 9 --lr 0.2 --dropout 0.2 &
  run long_v11     squeezenet1_1_small_bn --epochs 30 &
  run long_bypass  $B --epochs 30 &
elif [ "$ROUND" = 3 ]; then
  # round 2 lost whole classes to the ReLU after conv10 (top-5 stuck near 80%): drop it
  run e1_w05_nohr_d0.1_wu0.3 ${B}_w0.5 --no-head-relu --epochs 9 --dropout 0.1 --warmup-epochs 0.3 &
  run e2_w05_nohr            ${B}_w0.5 --no-head-relu --epochs 9 &
  run e3_w05_nohr_bs128      ${B}_w0.5 --no-head-relu --epochs 8 --dropout 0.1 --batch-size 128 --lr 0.1 &
  run e4_w05_sr025_nohr      ${B}_w0.5_sr0.25 --no-head-relu --epochs 7 --dropout 0.1 &
  run e5_w075_nohr           ${B}_w0.75 --no-head-relu --epochs 5 --dropout 0.1 &
  run f1_30ep_nohr_erase0.3  $B --no-head-relu --epochs 30 --random-erasing 0.3 --dropout 0.2 &
else
  # demo-sized: CPU epoch cost w0.5 64 s, w0.5_sr0.25 81 s, w0.75 104 s (bs 256)
  run d1_w05_drop0.1      ${B}_w0.5 --epochs 9 --dropout 0.1 --warmup-epochs 0.3 &
  run d2_w05_drop0.1_ls0  ${B}_w0.5 --epochs 9 --dropout 0.1 --warmup-epochs 0.3 --label-smoothing 0 &
  run d3_w05_bs128        ${B}_w0.5 --epochs 8 --dropout 0.1 --warmup-epochs 0.3 --batch-size 128 --lr 0.1 &
  run d4_w05_sr025        ${B}_w0.5_sr0.25 --epochs 7 --dropout 0.1 --warmup-epochs 0.3 &
  run d5_w075             ${B}_w0.75 --epochs 5 --dropout 0.1 --warmup-epochs 0.3 &
  run d6_w05_drop0_wd2e-4 ${B}_w0.5 --epochs 9 --dropout 0.0 --warmup-epochs 0.3 --weight-decay 2e-4 &
  # long recipes
  run l1_40ep_erase0.5    $B --epochs 40 --random-erasing 0.5 &
  run l2_40ep_erase0.3_d0.2 $B --epochs 40 --random-erasing 0.3 --dropout 0.2 &
  run l3_sr025_30ep_erase ${B}_sr0.25 --epochs 30 --random-erasing 0.5 &
  run l4_50ep_erase0.5    $B --epochs 50 --random-erasing 0.5 &
fi
wait
