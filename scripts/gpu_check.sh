#!/usr/bin/env bash
# GPU check of the benchmark suite (issue 13): MALMEN / MEND edit and meta-step, MEMIT statistics and
# edit, at growing m (64 ... 4096) on a GPT-2-sized random-config model in fp32 and bf16, with torch
# and NVML peak memory; a table on stdout, JSON in OUT_DIR. Under 10 minutes on one H200.
#
#   scripts/gpu_check.sh [OUT_DIR] [gpu_sweep.py options]     # CUDA (default OUT_DIR: .benchmarks)
#   scripts/gpu_check.sh /tmp/quick --cpu --quick             # CPU smoke test on a tiny model
#
# Needs torch, transformers, tokenizers, pandas, tabulate and nvidia-ml-py; editbench itself is
# imported from this checkout (installed into a scratch folder when `import editbench.methods` fails).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.benchmarks}"
[[ $# -gt 0 ]] && shift
mkdir -p "$out"
python="${PYTHON:-python3}"
if ! "$python" -c "import editbench.methods" 2>/dev/null; then
    site="$(mktemp -d)"
    "$python" -m pip install -q --no-deps --no-build-isolation --no-index --target "$site" . >/dev/null
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu_check_device.txt"
export PYTHONUNBUFFERED=1
set -o pipefail
timeout "${GPU_CHECK_TIMEOUT:-590}" "$python" benchmarks/gpu_sweep.py --out "$out/gpu_check.json" "$@" 2>&1 | tee "$out/gpu_check.txt"
