#!/usr/bin/env bash
# One-GPU check of the trainer (bf16 MFU, ZeRO 0-3 agreement, checkpoint/resume); see the
# docstring of bench/gpu_check.py. Run from the repository root:
#   DS_ACCELERATOR=cuda bash bench/gpu_check.sh      # GPU: ~2-4 min, at most ~7.5
#   bash bench/gpu_check.sh --dry-run                # tiny model on the CPU, < 2 min
# Output is also written to $OUT/gpu_check.log when $OUT is set. Exit status 1 if a check failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
if [[ " $* " == *" --dry-run "* ]] || ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  export DS_ACCELERATOR=cpu
else
  export DS_ACCELERATOR="${DS_ACCELERATOR:-cuda}"
fi
LOG=/dev/null
if [[ -n "${OUT:-}" ]]; then mkdir -p "$OUT" && LOG="$OUT/gpu_check.log"; fi
"$PY" bench/gpu_check.py "$@" 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
