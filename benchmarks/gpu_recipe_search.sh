#!/usr/bin/env bash
# Recipe search and the long recipe on a CUDA machine (used once with a lent GPU; see
# docs/BENCHMARKS.md). Runs several `squeezenet train` jobs side by side on one GPU.
# Usage: DATA_DIR=path/to/fashion-mnist OUT=out_dir bash benchmarks/gpu_recipe_search.sh
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-runs/gpu}
DATA_DIR=${DATA_DIR:-/usr/share/datasets/fashion-mnist}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
run() {  # name, then train flags
  local name=$1; shift
  python3 -m squeezenet train --data-dir "$DATA_DIR" --no-download --device cuda --threads 2 --no-progress \
    --out "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
  echo "$name: $(tail -1 "$OUT/$name.log")"
}
# demo-sized candidates (each fits ~9 CPU epochs of the 0.5x model in 10 minutes)
run demo_lr0.2   squeezenet1_1_small_bn_w0.5 --epochs 9 --lr 0.2 &
run demo_lr0.1   squeezenet1_1_small_bn_w0.5 --epochs 9 --lr 0.1 &
run demo_lr0.4   squeezenet1_1_small_bn_w0.5 --epochs 9 --lr 0.4 &
run demo_bypass  squeezenet1_1_simple_bypass_small_bn_w0.5 --epochs 9 --lr 0.2 &
run demo_drop0.2 squeezenet1_1_small_bn_w0.5 --epochs 9 --lr 0.2 --dropout 0.2 &
# long recipes
run long_v11     --config configs/long.toml &
run long_bypass  --config configs/long.toml squeezenet1_1_simple_bypass_small_bn &
wait
for f in "$OUT"/*/metrics.csv; do echo "== $f"; tail -n 2 "$f" | cut -c1-200; done
