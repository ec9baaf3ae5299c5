#!/usr/bin/env bash
# Every issue-13 target, before and after, in one run on one machine: one thread per measurement,
# two streams at once (load 2 on 2 cores). BEFORE is a checkout of the commit to compare with
# (e.g. `git worktree add ../before d185c99`) with its own virtual environment in BEFORE/.venv.
#   EDITBENCH_DATA=../shared/data benchmarks/issue13.sh ../before /tmp/issue13
set -uo pipefail
before=$(cd "$1" && pwd); out=${2:-/tmp/issue13}; after=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
export OMP_NUM_THREADS=1 EDITBENCH_DATA=$(cd "${EDITBENCH_DATA:?set EDITBENCH_DATA}" && pwd)
at() { (cd "$1" && shift && "$@"); }
py() { local tree=$1; shift; at "$tree" "$tree/.venv/bin/python" "$@"; }
stamp() { echo "== $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg): $*"; }
{  # stream 1: MEMIT edit, m = 16, published settings, raw prompts (the only format of the old commit)
  stamp "MEMIT edit after"; py "$after" "$after/benchmarks/ab_memit_edit.py" --m 16 --format raw
  stamp "MEMIT edit before"; py "$before" "$after/benchmarks/ab_memit_edit.py" --m 16 --format raw
  stamp "MEMIT edit after, chat (the task's default format)"; py "$after" "$after/benchmarks/ab_memit_edit.py" --m 16 --format chat
  stamp "stream 1 done"
} > "$out/stream1.log" 2>&1 &
{  # stream 2: MEMIT statistics, MALMEN edit (alternated), MALMEN meta-step vs a plain forward+backward
  for round in 1 2; do
    stamp "MEMIT statistics before ($round)"; py "$before" "$after/benchmarks/ab_memit_stats.py" --samples 100
    stamp "MEMIT statistics after ($round)"; py "$after" "$after/benchmarks/ab_memit_stats.py" --samples 100
    stamp "MALMEN edit before ($round)"; py "$before" "$after/benchmarks/ab_malmen_edit.py" --m 64 --format raw
    stamp "MALMEN edit after ($round)"; py "$after" "$after/benchmarks/ab_malmen_edit.py" --m 64 --format raw
  done
  stamp "MALMEN edit after, chat"; py "$after" "$after/benchmarks/ab_malmen_edit.py" --m 64 --format chat
  for m in 64 256; do stamp "meta-step m=$m"; py "$after" "$after/benchmarks/meta_step.py" --m "$m"; done
  stamp "stream 2 done"
} > "$out/stream2.log" 2>&1 &
wait
grep -h -E "^==|median|memit edit m=|statistics|meta-step|plain|warm|cold" "$out"/stream*.log | grep -v "it/s"
