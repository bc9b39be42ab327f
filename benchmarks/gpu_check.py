"""One prepared GPU measurement for issue 13 item 3 (run it in one go on an H100/H200).

Usage: python benchmarks/gpu_check.py [--out DIR] [--quick]

Measures, on the current backend, and writes ``gpu_check.json`` to ``--out``:

1. env steps/s of the full step (dynamics + vision) on ``normal`` at batch
   1k, 4k and 16k worlds, with compile time and memory per world
   (``simfish.tools.bench.run``);
2. end-to-end training with the users' settings in the one-device loop
   (``simfish bench train --mode device``) at 256 and 1024 worlds: env
   steps/s, learner steps/s, where time goes, compile times.

Goals (issue 13): >= 1,000,000 env steps/s at batch 1k-16k; >= 50,000
training env steps/s. ``--quick`` runs smaller sizes (a CPU smoke test).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
from bench_learner import use_retina_chunk  # this folder's learner benchmark

from simfish.config import load_config
from simfish.tools import bench
from simfish_rl.config import training_profile


def _memory_stats() -> dict | None:
    """The first device's allocator figures (peak bytes in use), where the backend has them."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 (backend specific)
        return None
    if not stats:
        return None
    keys = ("peak_bytes_in_use", "bytes_in_use", "bytes_limit", "largest_alloc_size")
    return {k: int(stats[k]) for k in keys if k in stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="folder for gpu_check.json")
    parser.add_argument("--quick", action="store_true", help="small sizes (CPU smoke test)")
    parser.add_argument("--seconds", type=float, default=45.0,
                        help="seconds of training measured per size")
    parser.add_argument("--budget", type=float, default=float("inf"),
                        help="skip what is left once this many seconds have passed")
    parser.add_argument("--train-worlds", type=int, nargs="+", default=None,
                        help="world counts of the training runs (default 1024 256)")
    parser.add_argument("--env-batches", type=int, nargs="*", default=None,
                        help="world counts of the env-step rows (default 1024 4096 16384)")
    parser.add_argument("--retina-chunk", type=int, default=None,
                        help="eye images per retina chunk in the learner (0: one chunk)")
    args = parser.parse_args()
    use_retina_chunk(args.retina_chunk)
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config("normal")
    env_batches = (16, 64) if args.quick else (1024, 4096, 16384)
    if args.env_batches is not None:
        env_batches = tuple(args.env_batches)
    train_worlds = args.train_worlds or ((8,) if args.quick else (1024, 256))
    report = {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
              "jax": jax.__version__, "retina_chunk": args.retina_chunk,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def over_budget(what: str) -> bool:
        if time.perf_counter() - start < args.budget:
            return False
        report.setdefault("skipped", []).append(what)
        print(f"skipped {what}: over the {args.budget:.0f} s budget", flush=True)
        return True

    def save():
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=float))

    save()
    rows = []
    for batch in env_batches:  # one at a time, so a failure keeps earlier rows
        if over_budget(f"env step at batch {batch}"):
            continue
        try:
            rows += bench.run("env", cfg, batch_sizes=(batch,), steps=100 if args.quick else 400)
        except Exception as err:  # noqa: BLE001 (recorded, e.g. out of memory)
            rows.append({"batch": batch, "error": repr(err)[:300]})
        rows[-1]["device_memory_after"] = _memory_stats()  # peak so far (largest batch yet)
        report["env_step"] = rows
        save()
        print(rows[-1], flush=True)

    trains = []
    for worlds in train_worlds:
        if over_budget(f"training with {worlds} worlds"):
            continue
        overrides = {"num_envs": worlds}
        if args.quick:
            overrides.update(min_replay_size=64, max_replay_size=2000)
        training = training_profile("users", overrides)
        try:
            trains.append(bench.train_benchmark(cfg, training, seconds=args.seconds,
                                                mode="device", iterations_per_call=10))
            print(bench.format_train_report(trains[-1]), flush=True)
        except Exception as err:  # noqa: BLE001
            trains.append({"num_envs": worlds, "error": repr(err)[:300]})
            print(trains[-1], flush=True)
        trains[-1]["device_memory_after"] = _memory_stats()
        report["training"] = trains
        save()
    save()
    print(f"wrote {out / 'gpu_check.json'}")


if __name__ == "__main__":
    main()
