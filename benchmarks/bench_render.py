"""Time to render an episode video: a random-policy episode of ``normal`` (1000 steps).

Usage:
  python benchmarks/bench_render.py [--steps 1000] [--out DIR]

Writes the episode log with the HDF5 logger (not timed), then times
``simfish.tools.render.render_episode`` on it: drawing and encoding every frame.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from simfish.config import load_config
from simfish.wrappers.base_environment import BaseEnvironment
from simfish_rl.eval_simfish_agent import StateEnvLoop
from simfish_rl.hdf5_logger import EnvInfoKeep, HDF5Logger
from simfish_rl.policy import RandomActor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--out", default=None, help="folder for the log and video (default: temp)")
    args = parser.parse_args()
    from simfish.tools.render import render_episode

    out = Path(args.out or tempfile.mkdtemp(prefix="bench_render_"))
    # Fixed energy so a random fish lives the whole episode.
    config = load_config("normal", {"max_sim_steps_per_episode": args.steps,
                                    "fish.fixed_energy_level": True})
    env = BaseEnvironment(config, seed=0)
    logger = HDF5Logger(out, label="bench", add_uid=False, wait_min=0)
    loop = StateEnvLoop(env, RandomActor(env.actions.num_actions, 0), observers=[EnvInfoKeep()],
                        should_update=False, logger=logger)
    summary = loop.run_episode()
    logger.write(summary)
    path = logger.written[0]
    t0 = time.perf_counter()
    result = render_episode(path, out / "episode.mp4", progress=False)
    elapsed = time.perf_counter() - t0
    print(f"rendered {summary['episode_length']}-step episode ({path}) to {out / 'episode.mp4'} "
          f"in {elapsed:.1f} s; {result}")


if __name__ == "__main__":
    main()
