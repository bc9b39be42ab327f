"""Per-episode behaviour statistics of the world under a uniformly random policy.

Runs N episodes (default 40) of a preset side by side (``jax.vmap`` over
worlds, one ``lax.scan`` over steps) and prints the mean and standard error
over episodes of: episode length, prey caught, wall-touch steps, attacks
suffered / avoided, energy at the end, the fraction of steps with the fish
(mouth centre) within 100 px of a wall, and the mean UV and red photon counts
per eye (red averaged over the viewing elevations).

It uses only the public API shared by old and new versions of the package
(``simfish.SimFishEnv``, ``simfish.load_config``, ``simfish.Actions``), so the
same script measures another checkout::

    python benchmarks/behaviour_stats.py --preset normal sparse
    PYTHONPATH=/path/to/other/src python benchmarks/behaviour_stats.py --preset normal
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import simfish

#: Distance (px) from a wall within which the fish counts as "at the wall".
NEAR_WALL_PX = 100.0
LAST = 2

METRICS = (
    "length",
    "prey_caught",
    "wall_touch_steps",
    "attacks_suffered",
    "attacks_avoided",
    "energy_at_end",
    "near_wall_fraction",
    "uv_left",
    "uv_right",
    "red_left",
    "red_right",
)


def run_episodes(preset: str, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """Plays ``episodes`` random-policy episodes of ``preset``; returns each metric [episodes]."""
    env = simfish.SimFishEnv(simfish.load_config(preset), simfish.Actions.default())
    width, height = float(env.config.arena.width), float(env.config.arena.height)
    max_steps = int(env.config.max_sim_steps_per_episode)
    n_actions = env.num_actions
    reset = jax.vmap(env.reset)
    step = jax.vmap(env.step)

    def body(carry, key):
        state, done, acc = carry
        k_act, k_env = jax.random.split(key)
        action = jax.random.randint(k_act, (episodes,), 0, n_actions, jnp.int32)
        state, ts = step(state, action, jax.random.split(k_env, episodes))
        live = ~done
        visual = ts.observation.observation[0]  # [B, positions, channels, eyes]
        x, y = state.fish.x, state.fish.y
        wall_dist = jnp.minimum(jnp.minimum(x, width - x), jnp.minimum(y, height - y))
        per_step = {
            "steps": jnp.ones_like(x),
            "near_wall": (wall_dist < NEAR_WALL_PX).astype(jnp.float32),
            "uv": jnp.mean(visual[:, :, 0, :], axis=1),  # [B, 2]
            "red": jnp.mean(visual[:, :, 1:, :], axis=(1, 2)),  # [B, 2]
        }
        acc = {
            k: acc[k] + jnp.where(live.reshape((-1,) + (1,) * (v.ndim - 1)), v, 0.0)
            for k, v in per_step.items()
        } | {k: acc[k] for k in acc if k not in per_step}
        last = live & (ts.step_type == LAST)
        final = {
            "length": state.step.astype(jnp.float32),
            "prey_caught": state.counts.prey_caught.astype(jnp.float32),
            "wall_touch_steps": state.counts.wall_touches.astype(jnp.float32),
            "attacks_suffered": state.counts.attacks_captured.astype(jnp.float32),
            "attacks_avoided": state.counts.attacks_avoided.astype(jnp.float32),
            "energy_at_end": state.fish.energy.astype(jnp.float32),
        }
        for k, v in final.items():
            acc[k] = jnp.where(last, v, acc[k])
        return (state, done | last, acc), None

    @jax.jit
    def play(key):
        k_reset, k_steps = jax.random.split(key)
        state, _ = reset(jax.random.split(k_reset, episodes))
        zeros = jnp.zeros((episodes,), jnp.float32)
        acc = {k: zeros for k in ("steps", "near_wall", "length", "prey_caught",
                                  "wall_touch_steps", "attacks_suffered", "attacks_avoided",
                                  "energy_at_end")}
        acc |= {"uv": jnp.zeros((episodes, 2)), "red": jnp.zeros((episodes, 2))}
        init = (state, jnp.zeros((episodes,), bool), acc)
        (_, done, acc), _ = jax.lax.scan(body, init, jax.random.split(k_steps, max_steps))
        return done, acc

    done, acc = jax.device_get(play(jax.random.PRNGKey(seed)))
    if not np.all(done):
        raise RuntimeError(f"{int(np.sum(~done))} episodes did not end within {max_steps} steps")
    steps = np.maximum(acc["steps"], 1.0)
    out = {k: np.asarray(acc[k]) for k in METRICS[:6]}
    out["near_wall_fraction"] = acc["near_wall"] / steps
    for i, eye in enumerate(("left", "right")):
        out[f"uv_{eye}"] = acc["uv"][:, i] / steps
        out[f"red_{eye}"] = acc["red"][:, i] / steps
    return out


def summarise(values: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """(mean, standard error of the mean) over episodes for each metric."""
    n = len(next(iter(values.values())))
    return {
        k: (float(np.mean(v)), float(np.std(v, ddof=1) / np.sqrt(n)) if n > 1 else 0.0)
        for k, v in values.items()
    }


def main() -> None:
    """Command line: presets, episode count, seed; prints a table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", nargs="+", default=["normal", "sparse"])
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the summaries to this JSON file")
    args = parser.parse_args()
    results = {}
    for preset in args.preset:
        t0 = time.perf_counter()
        stats = summarise(run_episodes(preset, args.episodes, args.seed))
        results[preset] = stats
        print(f"{preset}: {args.episodes} episodes in {time.perf_counter() - t0:.0f} s "
              f"(simfish from {simfish.__file__})")
        for k in METRICS:
            mean, sem = stats[k]
            print(f"  {k:20s} {mean:10.3f} +- {sem:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
