#!/usr/bin/env bash
# The first command to run on a machine with a GPU (see docs/gpu.md):
#
#     bash bench/gpu_smoke.sh
#
# 1. the CUDA test tier (python -m pytest -m cuda), on CIFAR-shaped data its fixtures write;
# 2. bench/train_speed.py on CUDA, fp32 and (where the GPU has fast bf16) bf16 side by side,
#    batch 256 (random CIFAR-shaped images);
# 3. bench/eval_speed.py --device cuda (encoding in the same precisions; random descriptors at
#    the CIFAR-10 protocol's sizes).
# Each bench prints one JSON line. Every step runs even if an earlier one failed; the
# script ends with one status line per step and exits 1 if any failed.
#
# --cpu-check runs the same steps on the CPU at tiny sizes (the CUDA tier is then all
# skipped): it checks the script itself, not the GPU; bf16 is timed only on a CPU with bf16
# instructions (never emulated). PYTHON selects the interpreter.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}

if [[ "${1:-}" == "--cpu-check" ]]; then
    device=cpu
    train_sizes=(--batch_size 4 --steps 1 --warmup 0 --peak_seconds 0.05)
    eval_sizes=(--queries 64 --gallery 1000 --plain_queries 2 --rows_queries 8 --repeats 1 --encode_images 8 --peak_seconds 0.05)
elif [[ $# -gt 0 ]]; then
    echo "error: unknown argument $1; usage: bash bench/gpu_smoke.sh [--cpu-check]" >&2
    exit 2
else
    device=cuda
    train_sizes=(--batch_size 256)
    eval_sizes=()
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "error: PyTorch sees no CUDA device; run this on a GPU machine (or check the script with --cpu-check)" >&2
        exit 1
    fi
    "$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CUDA', torch.version.cuda)"
fi

status=()
step() {   # step NAME COMMAND...: run it, remember whether it passed
    local name=$1
    shift
    echo "== $name: $*"
    if "$@"; then
        status+=("ok      $name")
    else
        status+=("FAILED  $name (exit $?)")
    fi
}

step "CUDA test tier" "$PY" -m pytest -m cuda -q -p no:cacheprovider tests/run/test_cuda.py
step "train_speed" "$PY" bench/train_speed.py --device "$device" --precision native "${train_sizes[@]}"
step "eval_speed" "$PY" bench/eval_speed.py --device "$device" --precision native ${eval_sizes[@]+"${eval_sizes[@]}"}

echo "== summary ($device)"
printf '%s\n' "${status[@]}"
for s in "${status[@]}"; do
    [[ $s == FAILED* ]] && exit 1
done
exit 0
