#!/usr/bin/env bash
# On a machine with an NVIDIA GPU (H100/H200): build the CUDA kernels for sm_90, check them against
# the CPU backend and float64, and time them against the copy bandwidth and PyTorch (eager and
# torch.compile), all in one run. Needs nvcc, cmake, ninja and python3 with torch; not Node.
#   bash bench/gpu.sh            results in $OUT (device tool) or bench/results/
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader || true
cmake -S . -B build-gpu-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DSOPHIA_CUDA=ON -DSOPHIA_CUDA_ARCHS=90 -DSOPHIA_NATIVE_BENCH=ON > "$out/cmake.log"
cmake --build build-gpu-bench --target sophia_gpu_bench >> "$out/cmake.log"
./build-gpu-bench/sophia_gpu_bench --n "${N:-16384}" --v "${VS:-32768,151936}" --json "$out/gpu-kernels.json" | tee "$out/gpu-kernels.txt"
python3 bench/gpu/torch_baseline.py --n "${N:-16384}" --v "${VS:-32768,151936}" --sophia "$out/gpu-kernels.json" --json "$out/gpu-torch.json" | tee "$out/gpu-torch.txt"
# The embedded model: CUDA backend against the CPU one (exits non-zero on a mismatch), and throughput.
cmake --build build-gpu-bench --target sophia_model_parity >> "$out/cmake.log"
./build-gpu-bench/sophia_model_parity | tee "$out/model-parity.txt"
# The same model in PyTorch (bench/gpu/torch_model.py; its --check against the CPU model runs where Node
# is): training (forward+backward+AdamW) and KV-cache sampling throughput, eager and torch.compile, MFU.
# Last, so a failure here leaves every result above in $out and still fails the script.
python3 bench/gpu/torch_model.py --bench --config models/sft-policy/config.json --json "$out/model-torch.json" | tee "$out/model-torch.txt"
