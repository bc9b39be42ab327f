"""Evaluation speed: episodes of ``normal`` played one world at a time vs in parallel.

Make a run directory with an untrained checkpoint once, then time ``eval_agent``
(compilation included, HDF5 files written) with this code or, through
``PYTHONPATH=/work/base/src``, with an older checkout (which has no
``num_parallel``: its one-world loop)::

    python benchmarks/bench_eval.py make-run /tmp/evalrun
    python benchmarks/bench_eval.py time /tmp/evalrun --episodes 32 --parallel 32
    PYTHONPATH=/work/base/src python benchmarks/bench_eval.py time /tmp/evalrun --episodes 4

Prints ``episodes E x steps: X s (Y env steps/s)``. ``--stages`` also prints
where the parallel path's time goes (first call of a jitted program = its
compilation; the sediment image is drawn when an episode is handed to the
observers; HDF5 writing, which overlaps the rest when it runs in the
logger's background thread). With ``JAX_COMPILATION_CACHE_DIR=<dir>`` set, a
second run reads the compiled programs from disk (a warm run).
"""

import argparse
import inspect
import time


def make_run(path: str, overrides: dict | None = None) -> None:
    """A run directory with an untrained checkpoint of ``normal`` (plus ``overrides``)."""
    from simfish.config import load_config
    from simfish.io.actions import Actions
    from simfish_rl.builder import make_agent
    from simfish_rl.checkpoint import RunDir
    from simfish_rl.config import TrainingConfig

    config = load_config("normal", overrides)
    training = TrainingConfig().replace({"num_envs": 2, "min_replay_size": 32,
                                         "max_replay_size": 64})
    run = RunDir(__import__("pathlib").Path(path))
    run.create(config, Actions.default(), training, seed=0)
    agent = make_agent(config, Actions.default(), training, seed=0)
    run.save_checkpoint(agent.learner, {"env_steps": 0, "learner_steps": 0, "episodes": 0,
                                        "actor_steps": 0})
    print(f"run directory {path}")


_STAGES = ("world reset (jitted, per episode)", "wait for the chunk program (compiled ahead)",
           "worlds + actor chunk (jitted)",
           "hand episode to observers (all)", "  of which episode start (sediment image)",
           "HDF5 write (hand over to the logger)", "HDF5 file writing (background thread)",
           "HDF5 close (waits for the last files)")


def _stage_timers() -> dict[str, list[float]]:
    """Wraps the parallel path's stages with wall-clock timers; returns their call times."""
    import collections

    import jax

    from simfish_rl import hdf5_logger, parallel_eval

    times: dict[str, list[float]] = collections.defaultdict(list)

    def timed(owner, name, label, block=False):
        fn = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            if block:
                jax.block_until_ready(out)
            times[label].append(time.perf_counter() - t0)
            return out

        if hasattr(fn, "lower"):  # a jitted function: keep ahead-of-time compilation
            wrapper.lower = fn.lower
        setattr(owner, name, wrapper)

    init = parallel_eval.ParallelEvaluator.__init__

    def patched_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        timed(self, "_start", "world reset (jitted, per episode)", block=True)
        timed(self, "_play", "worlds + actor chunk (jitted)", block=True)

    parallel_eval.ParallelEvaluator.__init__ = patched_init
    ahead = parallel_eval.ParallelEvaluator._compile_ahead

    def patched_ahead(self, *args, **kwargs):
        thread = ahead(self, *args, **kwargs)
        timed(thread, "join", "wait for the chunk program (compiled ahead)")
        return thread

    parallel_eval.ParallelEvaluator._compile_ahead = patched_ahead
    timed(parallel_eval.ParallelEvaluator, "_replay", "hand episode to observers (all)")
    timed(hdf5_logger.EnvInfoKeep, "_read_episode_start", "  of which episode start (sediment image)")
    timed(hdf5_logger.HDF5Logger, "write", "HDF5 write (hand over to the logger)")
    timed(hdf5_logger._EpisodeFileWriter, "_write_one", "HDF5 file writing (background thread)")
    timed(hdf5_logger.HDF5Logger, "close", "HDF5 close (waits for the last files)")
    return times


def _compile_in_order() -> None:
    """Makes the parallel path compile its chunk program at its first call (no thread)."""
    import threading

    from simfish_rl import parallel_eval

    def no_thread(self, *args, **kwargs):
        thread = threading.Thread(target=lambda: None)
        thread.start()
        return thread

    parallel_eval.ParallelEvaluator._compile_ahead = no_thread


def time_eval(path: str, episodes: int, parallel: int | None, label: str,
              stages: bool = False, compile_ahead: bool = True) -> None:
    from simfish_rl.eval_simfish_agent import eval_agent

    if not compile_ahead:
        _compile_in_order()
    times = _stage_timers() if stages else {}

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
    for name in sorted(times, key=list(_STAGES).index):
        calls = times[name]
        print(f"  {name:<45} {sum(calls):6.1f} s in {len(calls)} calls (first {calls[0]:.1f} s)")


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
    p.add_argument("--stages", action="store_true", help="time the parallel path's stages")
    p.add_argument("--no-compile-ahead", action="store_true",
                   help="compile the chunk program at its first call, not in a thread")
    args = parser.parse_args()
    if args.cmd == "make-run":
        make_run(args.path)
    else:
        time_eval(args.path, args.episodes, args.parallel, args.label, args.stages,
                  compile_ahead=not args.no_compile_ahead)


if __name__ == "__main__":
    main()
