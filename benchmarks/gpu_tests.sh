#!/usr/bin/env bash
# The tests whose outcome may depend on the accelerator, run on it in one go: the
# parallel evaluation's byte-identical files for any number of worlds, the golden
# scenes and bouts measured on the users' tool, the fused learner step against two
# SGD steps, and the device loop (training, checkpoints, resume, evaluation).
#
# Usage: benchmarks/gpu_tests.sh OUT_DIR
# Writes pytest's whole output to OUT_DIR/gpu_tests.log, prints its last 80 lines
# and exits with pytest's status. On a machine without the test tools (and no
# network), first carry wheels made here, e.g. for Python 3.12:
#   python3.12 -m pip download --no-deps -d .whl/test "pytest>=8,<10" pluggy \
#     iniconfig "hypothesis>=6.100,<7" sortedcontainers attrs packaging
# and install them with
#   python3 -m pip install --no-index --no-deps --target /tmp/site .whl/test/*.whl
#   export PYTHONPATH=/tmp/site:$PWD/src
# pytest's warnings filter is turned off (-p no:warnings): the point is each test's
# result on this backend, not deprecation notices of another JAX version.
set -u
out=${1:?usage: gpu_tests.sh OUT_DIR}
mkdir -p "$out"
py=${PYTHON:-python3}
$py -c "import jax; print('jax', jax.__version__, 'backend', jax.default_backend(), jax.devices())" \
  2>&1 | tee "$out/gpu_tests.log"
$py -m pytest -q -p no:cacheprovider -p no:warnings -ra --durations=15 \
  tests/rl/test_parallel_eval.py \
  tests/vision/test_golden_vision.py \
  tests/world/test_dynamics_golden.py \
  tests/rl/test_learner_step.py \
  tests/rl/test_device_loop.py >> "$out/gpu_tests.log" 2>&1
status=$?
tail -80 "$out/gpu_tests.log"
exit "$status"
