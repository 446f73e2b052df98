#!/usr/bin/env bash
# The GPU paths in one run, for a machine with a CUDA GPU (the suite runs on CPUs only):
#   bash scripts/gpu_check.sh [OUT_DIR]
# Data: $DATA_DIR (Fashion-MNIST IDX files) when set, else data/fashion-mnist (what
# scripts/gpu_wheels.sh copies there), else Debian's folder, else digits. Where Hydra is not
# installed (the device machine's image), the wheels in .whl/ from scripts/gpu_wheels.sh are.
set -euo pipefail
out=${1:-${OUT:-gpu_check}}
runs=$(mktemp -d)  # the run directories; only the summaries go to $out (the device returns 8 files)
mkdir -p "$out"
if ! python3 -c "import hydra" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
# This checkout's code and configs, installed or not.
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
data_dir=${DATA_DIR:-data/fashion-mnist}
[ -d "$data_dir" ] || data_dir=/usr/share/datasets/fashion-mnist
if [ -f "$data_dir/train-images-idx3-ubyte.gz" ] || [ -f "$data_dir/train-images-idx3-ubyte" ]; then
  data=(experiment=fashion_mnist "data.data_dir=$data_dir")
  bench=(--data-dir "$data_dir")
else
  data=(experiment=digits)
  bench=()
fi
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
# The suite's GPU tests (skipped on machines without one), and batches cut on the GPU are the
# host's batches.
python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py | tee "$out/pytest.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_speed.py -k "device" | tee -a "$out/pytest.txt"
# bf16-mixed with the data on the device, then 16-mixed, then compiled with CUDA graphs.
for extra in "trainer.precision=bf16-mixed" "trainer.precision=16-mixed" \
             "model.compile=true model.compile_mode=reduce-overhead"; do
  name=$(echo "$extra" | tr ' =.' '___')
  # shellcheck disable=SC2086
  python3 -m vaelab.train "${data[@]}" trainer=gpu trainer.max_epochs=2 data.on_device=true $extra \
    "hydra.run.dir=$runs/$name" 2>&1 | tail -3
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[1], r['test/elbo'])" \
    "$runs/$name/results.json" | tee -a "$out/elbos.txt"
done
python3 scripts/benchmark.py --device cuda "${bench[@]}" --epochs 5 --repeats 2 \
  --out "$out/benchmark_cuda.json" | tee "$out/benchmark_cuda.md"
# The small model, where the host time per step is all there is on a GPU.
python3 scripts/benchmark.py --device cuda "${bench[@]}" --epochs 5 --repeats 2 \
  --hidden 64 --latent 8 --batch-size 32 --variants plain,plain_compiled,vaelab,vaelab_k1,vaelab_compiled \
  --out "$out/benchmark_cuda_small.json" | tee "$out/benchmark_cuda_small.md"
# A beta x seed sweep of the small model: basic launcher against hydra/launcher=batched, end to end.
python3 scripts/benchmark.py --device cuda "${bench[@]}" --sweep --hidden 64 --latent 8 \
  --batch-size 32 --limit 12800 --epochs 4 \
  --out "$out/benchmark_cuda_sweep.json" | tee "$out/benchmark_cuda_sweep.md"
