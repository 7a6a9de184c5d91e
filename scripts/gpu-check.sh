#!/usr/bin/env bash
# The GPU check of issue 14, as one script for a lent GPU machine (which has no Rust
# toolchain: the binary is built ahead, see docs/notebook/2026-11-30-the-gpu-path-script-and-binary-recipe-not-run-no-gpu-lent-in.md).
#
#   scripts/gpu-check.sh [BIN] [ML1M_DIR] [OUT_DIR]
#
#   BIN       a glorank binary built with `--features wgpu` (default gpu-check/glorank)
#   ML1M_DIR  MovieLens-1M folder with ratings.dat (or ratings.dat.gz, to keep the carried
#             tree under 64 MiB), movies.dat and users.dat (default gpu-check/ml-1m;
#             skipped when absent)
#   OUT_DIR   where results go (default $OUT, else gpu-check/out)
#
# Environment: DEVICE (default wgpu; `flex` rehearses the script on a CPU), FORMAT (the
# dataset format of ML1M_DIR for `glorank prepare`, default ml-1m), STEP_TIMEOUT (seconds
# any one step may run, default 240, so the whole script ends inside a 10-minute call).
#
# It writes, each step's exit status in status.txt:
#   device.txt         nvidia-smi, the Vulkan loader and driver it found
#   bench_cpu.json     `glorank bench --synthetic --json` on the CPU (flex), for the ratio
#   bench_device.json  the same on the GPU, with `--parity 100`: greedy lists of 100 requests
#                      decoded on the CPU (host path) and on the GPU with the same weights
#   sft_epoch.txt      one SFT epoch on ML-1M on the GPU at batch 256, with the protocol of
#                      configs/ml-1m.toml (`rerank_train_slates = 3`: about 18,000 training
#                      slates); its samples/s from sft_log.jsonl, its wall time in status.txt
#
# Every step runs even when an earlier one failed, so one run shows everything it can.
set -uo pipefail
BIN=${1:-gpu-check/glorank}
ML1M=${2:-gpu-check/ml-1m}
DEST=${3:-${OUT:-gpu-check/out}}
DEVICE=${DEVICE:-wgpu}
FORMAT=${FORMAT:-ml-1m}
STEP_TIMEOUT=${STEP_TIMEOUT:-240}
mkdir -p "$DEST"
STATUS="$DEST/status.txt"
: >"$STATUS"
step() { # step NAME COMMAND...: runs it, records its exit status
    local name=$1
    shift
    local t0=$SECONDS
    timeout "$STEP_TIMEOUT" "$@"
    local rc=$? # 124: the step ran past STEP_TIMEOUT
    echo "$name rc=$rc seconds=$((SECONDS - t0))" | tee -a "$STATUS"
}

# Vulkan: the loader from carried Debian packages (.gl/*.deb, see the device notes) when the
# machine lacks it, and NVIDIA's driver manifest when the loader finds no driver by itself.
if ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
    ldconfig
fi
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi

{
    echo "== nvidia-smi"
    nvidia-smi 2>&1 || echo "no nvidia-smi"
    echo "== libvulkan"
    ldconfig -p | grep -i vulkan || echo "no Vulkan loader"
    echo "== VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
    echo "== CPU"
    nproc
    grep -m1 "model name" /proc/cpuinfo
} >"$DEST/device.txt" 2>&1

step cpu_bench sh -c "'$BIN' bench --synthetic --json >'$DEST/bench_cpu.json' 2>'$DEST/bench_cpu.err'"
step device_bench sh -c "'$BIN' bench --synthetic --json --device $DEVICE --parity 100 \
    >'$DEST/bench_device.json' 2>'$DEST/bench_device.err'"

if [ -e "$ML1M/ratings.dat.gz" ] && [ ! -e "$ML1M/ratings.dat" ]; then
    UNPACKED=$(mktemp -d)
    cp "$ML1M"/*.dat "$UNPACKED"/ 2>/dev/null
    gunzip -c "$ML1M/ratings.dat.gz" >"$UNPACKED/ratings.dat"
    ML1M=$UNPACKED
fi
if [ -e "$ML1M/ratings.dat" ] || [ -e "$ML1M/u.data" ]; then
    RUN=$(mktemp -d)
    cat >"$RUN/sft.toml" <<'EOF'
[sft]
epochs = 1
batch_size = 256
EOF
    step prepare "$BIN" prepare --dataset "$FORMAT" --path "$ML1M" --out "$RUN" \
        --rerank-train-slates 3 --quiet
    step tokenize sh -c "'$BIN' tokenize --data '$RUN' --out '$RUN' >'$DEST/tokenize.txt' 2>&1"
    step sft_epoch sh -c "'$BIN' train sft --data '$RUN' --out '$RUN' --config '$RUN/sft.toml' \
        --device $DEVICE --quiet >'$DEST/sft_epoch.txt' 2>&1"
    tail -n 5 "$RUN/sft_log.jsonl" >>"$DEST/sft_epoch.txt" 2>/dev/null
else
    echo "sft_epoch skipped: no dataset in $ML1M" | tee -a "$STATUS"
fi
cat "$STATUS"
