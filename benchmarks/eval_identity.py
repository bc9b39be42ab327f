"""Are evaluation episodes the same whatever the number of parallel worlds, on this backend?

Builds the small run of ``tests/rl/test_parallel_eval.py`` (untrained network,
400 x 400 arena, 20-step episodes), evaluates the same seed with each ``E`` of
``--parallel`` (twice for the first, to see whether two compilations of one
program agree), and compares every episode file with the first evaluation's
(``compare_eval_logs.py``). Set ``XLA_FLAGS`` before running to try compiler
settings, e.g. ``--xla_gpu_deterministic_ops=true``::

    python benchmarks/eval_identity.py /tmp/ident --parallel 1 3
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_eval import make_run  # noqa: E402
from compare_eval_logs import compare  # noqa: E402

SMALL_ENV = {
    "arena.width": 400,
    "arena.height": 400,
    "prey.num": 15,
    "predator.probability_per_epoch_step": 0.0,
    "max_sim_steps_per_episode": 20,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path", type=Path)
    p.add_argument("--parallel", type=int, nargs="+", default=[1, 3])
    p.add_argument("--episodes", type=int, default=4)
    args = p.parse_args()

    import jax

    from simfish_rl.eval_simfish_agent import eval_agent

    print(f"jax {jax.__version__} on {jax.default_backend()}", flush=True)
    run_path = args.path / "run"
    make_run(str(run_path), SMALL_ENV)
    labels = []
    for i, e in enumerate([args.parallel[0], *args.parallel]):
        label = f"e{e}_{i}"
        eval_agent(None, run_path, num_episodes=args.episodes, log_subdir=label, seed=7,
                   epsilon=0.3, num_parallel=e)
        labels.append(label)
    logs = run_path / "logs"
    failed = False
    for label in labels[1:]:
        same, total, lines = compare(logs / labels[0], logs / label)
        print(f"{labels[0]} vs {label}: {same} of {total} datasets identical", flush=True)
        # The first episode's lines: where the two evaluations first part.
        for line in [x for x in lines if x.startswith("logs_1.hdf5")][:40]:
            print("  " + line)
        failed |= same != total
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
