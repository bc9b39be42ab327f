"""Evaluation speed: episodes of ``normal`` played one world at a time vs in parallel.

Make a run directory with an untrained checkpoint once, then time ``eval_agent``
(compilation included, HDF5 files written) with this code or, through
``PYTHONPATH=/work/base/src``, with an older checkout (which has no
``num_parallel``: its one-world loop)::

    python benchmarks/bench_eval.py make-run /tmp/evalrun
    python benchmarks/bench_eval.py time /tmp/evalrun --episodes 32 --parallel 32
    PYTHONPATH=/work/base/src python benchmarks/bench_eval.py time /tmp/evalrun --episodes 4

Prints ``episodes E x steps: X s (Y env steps/s)``.
"""

import argparse
import inspect
import time


def make_run(path: str) -> None:
    from simfish.config import load_config
    from simfish.io.actions import Actions
    from simfish_rl.builder import make_agent
    from simfish_rl.checkpoint import RunDir
    from simfish_rl.config import TrainingConfig

    config = load_config("normal")
    training = TrainingConfig().replace({"num_envs": 2, "min_replay_size": 32,
                                         "max_replay_size": 64})
    run = RunDir(__import__("pathlib").Path(path))
    run.create(config, Actions.default(), training, seed=0)
    agent = make_agent(config, Actions.default(), training, seed=0)
    run.save_checkpoint(agent.learner, {"env_steps": 0, "learner_steps": 0, "episodes": 0,
                                        "actor_steps": 0})
    print(f"run directory {path}")


def time_eval(path: str, episodes: int, parallel: int | None, label: str) -> None:
    from simfish_rl.eval_simfish_agent import eval_agent

    kwargs = {}
    if parallel is not None:
        if "num_parallel" not in inspect.signature(eval_agent).parameters:
            raise SystemExit("this checkout has no num_parallel")
        kwargs["num_parallel"] = parallel
    start = time.perf_counter()
    summaries = eval_agent(None, path, num_episodes=episodes, log_subdir=label, seed=0, **kwargs)
    seconds = time.perf_counter() - start
    steps = sum(s["episode_length"] for s in summaries)
    print(f"episodes {episodes} (parallel {parallel or 1}), {steps} steps: {seconds:.1f} s "
          f"({steps / seconds:.0f} env steps/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make-run")
    p.add_argument("path")
    p = sub.add_parser("time")
    p.add_argument("path")
    p.add_argument("--episodes", type=int, default=32)
    p.add_argument("--parallel", type=int, default=None)
    p.add_argument("--label", default="bench")
    args = parser.parse_args()
    if args.cmd == "make-run":
        make_run(args.path)
    else:
        time_eval(args.path, args.episodes, args.parallel, args.label)


if __name__ == "__main__":
    main()
