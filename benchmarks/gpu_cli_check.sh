#!/usr/bin/env bash
# The second prepared GPU check (issue 13 item 3), after benchmarks/gpu_check.py:
#   1. the learner step with the retina in chunks of 512 images (the CPU setting) and in
#      one chunk, and the breakdown of a learner step;
#   2. the command line on the GPU: `simfish train` (device loop, the default there) on
#      `small`, a resume to more steps, then `simfish evaluate --parallel 32`.
# Usage: benchmarks/gpu_cli_check.sh OUT_DIR [SCALE]
# SCALE (default 1) multiplies the training steps and worlds down for a CPU smoke test
# (e.g. 0.01). Each part has its own time limit, so a failure leaves the others' output.
set -u
out=${1:?usage: gpu_cli_check.sh OUT_DIR [SCALE]}
scale=${2:-1}
mkdir -p "$out"
py=${PYTHON:-python3}
steps=$($py -c "print(max(2000, int(3_000_000 * $scale)))")
more=$($py -c "print(max(4000, int(4_000_000 * $scale)))")
worlds=$($py -c "print(max(8, int(1024 * $scale)))")
learner_steps=$($py -c "print(max(3, int(30 * $scale)))")
run=$(mktemp -d)/run

part() {  # part NAME LIMIT_S COMMAND...: runs, times and logs one part
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit} s)"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -v -i "warning"
  echo "== $name: rc ${PIPESTATUS[0]}, $((SECONDS - t0)) s"
}

part "learner, retina chunks of 512" 120 $py benchmarks/bench_learner.py --steps "$learner_steps" --retina-chunk 512
part "learner, retina in one chunk" 120 $py benchmarks/bench_learner.py --steps "$learner_steps" --retina-chunk 0
part "train small ($worlds worlds, $steps steps)" 180 $py -m simfish.tools.cli train --config small \
  --profile quick --train samples_per_insert=1 --num-envs "$worlds" --run-dir "$run" --steps "$steps" \
  --max-minutes 2 --quiet
cp "$run/metrics.csv" "$out/metrics.csv" 2>/dev/null
part "resume to $more steps" 120 $py -m simfish.tools.cli train --run-dir "$run" --steps "$more" --max-minutes 1 --quiet
cp "$run/metrics.csv" "$out/metrics_resumed.csv" 2>/dev/null
part "evaluate 32 episodes, --parallel 32" 150 $py -m simfish.tools.cli evaluate --run-dir "$run" \
  --episodes 32 --parallel 32 --label gpu --quiet
ls -la "$run/logs/gpu" 2>&1 | head -5
part "learner breakdown" 150 $py benchmarks/bench_learner.py --breakdown
