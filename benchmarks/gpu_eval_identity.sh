#!/usr/bin/env bash
# Why are evaluation files not byte-identical across --parallel on a GPU, and which
# XLA setting makes them so? On an H200 (JAX 0.11.2, 2026-12-04) the one-world and
# 3-slot evaluations of tests/rl/test_parallel_eval.py gave the same actions but a
# different LSTM state from step 2 on; on CPU they are identical. This runs
# benchmarks/eval_identity.py (E = 1 twice, then 3: separates "two compilations of
# one program differ", i.e. autotuning, from "the batch size changes the numbers")
# under several settings and keeps the output in OUT_DIR/identity.log. Each line
# names the first step at which a dataset differs: a world dataset (vis_observation,
# fish_x) parting before actor_state points at the vmapped world step (e.g. the
# vision einsums as cuBLAS matmuls whose kernel depends on the batch), actor_state
# first at the network. A variant whose flag this XLA does not know fails alone.
# Six variants of about a minute each (at most 85 s each).
#
# Usage: benchmarks/gpu_eval_identity.sh OUT_DIR   (needs the .whl setup of gpu_tests.sh)
set -u
out=${1:?usage: gpu_eval_identity.sh OUT_DIR}
mkdir -p "$out"
py=${PYTHON:-python3}
variant() {
  local name=$1
  shift
  echo "=== $name"
  env "$@" timeout 85 "$py" benchmarks/eval_identity.py "$(mktemp -d)" --parallel 1 3 2>&1 \
    | grep -v -i warning
}
{
  variant default X=1
  variant autotune_level_0 XLA_FLAGS=--xla_gpu_autotune_level=0
  variant deterministic_ops XLA_FLAGS=--xla_gpu_deterministic_ops=true
  variant matmul_precision_highest JAX_DEFAULT_MATMUL_PRECISION=highest
  # Passes that could turn lax.map's one-row matmuls into one batched matmul.
  variant no_dot_merger XLA_FLAGS=--xla_disable_hlo_passes=dot-merger
  variant no_while_unrolling \
    XLA_FLAGS=--xla_gpu_enable_while_loop_unrolling=WHILE_LOOP_UNROLLING_NO_UNROLL
} 2>&1 | tee "$out/identity.log"
