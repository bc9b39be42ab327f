"""The ``simfish`` command-line tool.

Each sub-command parses its options here and calls library code; heavy modules
(JAX, the agent) are imported only by the commands that need them. Problems with
the user's input are printed as one line (``simfish: error: ...``) with exit
status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from simfish.errors import SimFishError

log = logging.getLogger("simfish")

#: Ray actor processes (train) or workers (evaluate) when --actors is not given.
DEFAULT_ACTORS = 2

#: Environment variable naming the persistent compilation cache folder ("off" disables it).
COMPILE_CACHE_ENV = "SIMFISH_COMPILE_CACHE"

#: Commands that use the compilation cache by default. ``bench`` does not, so that
#: its compile times are those of a first run unless a cache is asked for.
_CACHED_COMMANDS = frozenset({"simulate", "train", "evaluate", "show-eyes"})

_CACHE_OFF = frozenset({"off", "none", "0", "false", "no"})


#: Commands (``command_name``) that split the CPU into one JAX device per usable
#: core by default (``--cpu-devices auto``): their vectorised worlds then run on
#: every core at once (docs/performance.md). The others keep JAX's single CPU
#: device unless ``--cpu-devices`` is given; so does ``bench train``, which
#: measures what ``simfish train`` gets (its learner is slower on two devices).
_SPLIT_CPU_COMMANDS = frozenset({"bench sim", "bench env", "simulate"})

#: Environment variable that turns the huge-page setting off ("0").
HUGE_PAGES_ENV = "SIMFISH_HUGE_PAGES"

#: glibc's tunable that backs malloc's large blocks with transparent huge pages.
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"

#: Commands (``command_name``) started with ``HUGE_PAGES_TUNABLE``
#: (see ``huge_pages_environment``): the ones that run the learner.
_HUGE_PAGE_COMMANDS = frozenset({"train", "bench train"})

_THP_MODE_FILE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def command_name(args: argparse.Namespace) -> str:
    """The command's name, with what ``bench`` measures: ``"train"``, ``"bench env"``, ..."""
    if args.command == "bench":
        return f"bench {args.what}"
    return args.command


def cpu_device_count(command: str, option: str | None,
                     environ: Mapping[str, str] = os.environ) -> int | None:
    """How many CPU devices to ask JAX for, or None to leave JAX's default.

    ``--cpu-devices N`` wins; else ``$JAX_NUM_CPU_DEVICES`` (JAX reads it
    itself: None); else ``auto`` for ``bench sim``, ``bench env`` and
    ``simulate`` (``command_name``): one device per core this process may run
    on. ``auto`` can also be given explicitly.

    Raises:
      SimFishError: the option is neither ``auto`` nor a positive integer.
    """
    if option is None:
        if environ.get("JAX_NUM_CPU_DEVICES") or command not in _SPLIT_CPU_COMMANDS:
            return None
        option = "auto"
    if option.strip().lower() == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    try:
        count = int(option)
    except ValueError:
        count = 0
    if count < 1:
        raise SimFishError(f"--cpu-devices: expected 'auto' or a positive integer, got {option!r}")
    return count


def transparent_huge_pages(path: Path = _THP_MODE_FILE) -> str | None:
    """The kernel's transparent huge page mode (``always``, ``madvise``, ``never``), or None."""
    try:
        text = path.read_text()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else None


def huge_pages_environment(command: str, environ: Mapping[str, str],
                           libc: tuple[str, str], thp_mode: str | None) -> dict[str, str] | None:
    """The environment to restart ``command`` in with huge pages, or None to run as is.

    XLA allocates the temporary buffers of every call of a compiled program
    afresh: 147 MB per learner step. glibc maps blocks that large from the
    kernel and unmaps them when they are freed, so each step touched 36,000
    new 4 KB pages, and the kernel's work on them took 70 ms of CPU time per
    step. With ``glibc.malloc.hugetlb=1`` malloc asks for 2 MB pages there,
    and the learner step ran 1.2x faster (docs/training_speed.md). glibc
    reads its tunables only when a process starts, hence the restart.

    Returns None (nothing to gain) for commands other than ``train`` and
    ``bench train`` (``command_name``), when ``$SIMFISH_HUGE_PAGES`` is
    ``0``, when the C library is not glibc 2.35 or later, when the kernel's
    mode is not ``madvise`` (``always`` gives huge pages already, ``never``
    none), or when ``$GLIBC_TUNABLES`` already sets ``glibc.malloc.hugetlb``.
    """
    if command not in _HUGE_PAGE_COMMANDS or environ.get(HUGE_PAGES_ENV, "").strip() == "0":
        return None
    name, version = libc
    try:
        glibc_version = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return None
    if name != "glibc" or glibc_version < (2, 35) or thp_mode != "madvise":
        return None
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return None
    return {**environ,
            "GLIBC_TUNABLES": f"{tunables}:{HUGE_PAGES_TUNABLE}" if tunables else HUGE_PAGES_TUNABLE}


def huge_pages_on(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process runs with ``HUGE_PAGES_TUNABLE`` (glibc read it at start)."""
    return HUGE_PAGES_TUNABLE in environ.get("GLIBC_TUNABLES", "")


def restart_with_huge_pages(command: str, argv: Sequence[str]) -> None:
    """Replaces this process by ``argv`` with huge pages, where ``huge_pages_environment``
    says they help ``command``; returns (doing nothing) otherwise."""
    env = huge_pages_environment(command, os.environ, platform.libc_ver(),
                                 transparent_huge_pages())
    if env is not None and argv and argv[0]:  # (no interpreter path: nothing to restart)
        os.execve(argv[0], list(argv), env)


def _split_cpu(count: int) -> None:
    """Asks JAX for ``count`` CPU devices (before its backends start)."""
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError as err:  # a backend already started: keep what it has
        log.warning("--cpu-devices %d ignored: %s", count, err)


def default_compile_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_CACHE_HOME/simfish/jax``, or ``~/.cache/simfish/jax`` when XDG_CACHE_HOME is unset."""
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "simfish" / "jax"


def compile_cache_dir(command: str, option: str | None,
                      environ: Mapping[str, str] = os.environ) -> Path | None:
    """The persistent compilation cache folder for one command, or None for no cache.

    Precedence: the ``--compile-cache`` option, then ``$SIMFISH_COMPILE_CACHE``,
    then JAX's own ``$JAX_COMPILATION_CACHE_DIR`` (JAX reads it itself, so
    None is returned), then the default folder for the commands that compile
    long programs (train, evaluate, simulate, show-eyes). ``off`` (or none, 0,
    false, no) disables the cache.
    """
    choice = option if option is not None else environ.get(COMPILE_CACHE_ENV)
    if choice is not None:
        if choice.strip().lower() in _CACHE_OFF or not choice.strip():
            return None
        return Path(choice).expanduser()
    if environ.get("JAX_COMPILATION_CACHE_DIR") or command not in _CACHED_COMMANDS:
        return None
    return default_compile_cache_dir(environ)


def _enable_compile_cache(folder: Path) -> None:
    """Points JAX's persistent compilation cache at ``folder`` (before anything compiles).

    Programs that took at least a second to compile are stored (JAX's
    default threshold), so a second `simfish evaluate` or a resumed run loads
    them instead of compiling again. A folder that cannot be made is only
    logged: the command then runs without the cache.
    """
    import jax

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        log.warning("compilation cache %s unusable (%s); compiling without it", folder, err)
        return
    jax.config.update("jax_compilation_cache_dir", str(folder))
    log.debug("JAX compilation cache: %s", folder)


def _overrides(args: argparse.Namespace) -> dict:
    from simfish.config import parse_override

    return dict(parse_override(text) for text in (args.set or []))


def _load(args: argparse.Namespace):
    from simfish.config import load_config

    return load_config(args.config or "normal", _overrides(args))


# ---------------------------------------------------------------------------
# Commands.


def _config_show(args: argparse.Namespace) -> int:
    cfg = _load(args)
    print(f"# resolved from {cfg.source}")
    print(cfg.to_yaml(), end="")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from simfish.tools.simulate import simulate

    cfg = _load(args)
    summary = simulate(
        cfg,
        num_worlds=args.worlds,
        num_steps=args.steps,
        seed=args.seed,
        policy=args.policy,
        progress=not args.quiet,
    )
    print(f"simulated {args.worlds} worlds x {args.steps} steps of '{args.config}' "
          f"with a {args.policy} policy")
    for key, value in summary.items():
        print(f"  {key:<28} {value:.6g}" if isinstance(value, float) else f"  {key:<28} {value}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from simfish.tools import bench

    cfg = _load(args)
    if args.what == "train":
        from simfish.config import parse_override
        from simfish_rl.config import training_profile

        options = dict(parse_override(text) for text in (args.train or []))
        if args.num_envs is not None:
            options["num_envs"] = args.num_envs
        training = training_profile(args.profile, options)
        report = bench.train_benchmark(cfg, training, seconds=args.seconds, mode=args.mode,
                                       iterations_per_call=args.iterations_per_call,
                                       seed=args.seed)
        print(bench.format_train_report(report))
        return 0
    rows = bench.run(args.what, cfg, batch_sizes=args.batch, steps=args.steps, seed=args.seed)
    print(bench.format_table(args.what, rows))
    return 0


def _train(args: argparse.Namespace) -> int:
    from simfish.config import parse_override
    from simfish_rl.config import training_profile
    from simfish_rl.training import RunDir, train

    _check_distributed(args)
    run = RunDir(Path(args.run_dir))
    env_config = _load(args) if (args.config or not run.exists()) else None
    if env_config is None and args.set:
        raise SimFishError("--set needs --config (a resumed run keeps its recorded config)")
    options = dict(parse_override(text) for text in (args.train or []))
    if args.num_envs is not None:
        options["num_envs"] = args.num_envs
    if run.exists() and not args.profile:
        # Resuming: --train options change the recorded ones (only those that do
        # not change learning are accepted; train() says which are refused).
        training = run.load()[2].replace(options) if options else None
    else:
        training = training_profile(args.profile or "users", options)
    device_loop = args.device_loop
    if device_loop is None:
        import jax

        device_loop = jax.default_backend() == "gpu"
    if device_loop and args.alternate:
        raise SimFishError("--alternate applies to the host loop; drop it or pass --no-device-loop")
    if run.exists() and run.progress() is not None:
        print(f"resuming {run.path} from env step {run.progress()['env_steps']}")
    max_seconds = None if args.max_minutes is None else args.max_minutes * 60
    if args.distributed:
        from simfish_rl.distributed import train_distributed

        summary = train_distributed(
            args.run_dir,
            env_config=env_config,
            training=training,
            num_steps=args.steps,
            seed=args.seed,
            options=_ray_options(args, training or run.load()[2]),
            progress=not args.quiet,
            max_seconds=max_seconds,
        )
    elif device_loop:
        from simfish_rl.device_loop import train_device_loop

        summary = train_device_loop(
            args.run_dir, env_config=env_config, training=training, num_steps=args.steps,
            seed=args.seed, progress=not args.quiet, max_seconds=max_seconds,
            iterations_per_call=args.iterations_per_call,
        )
    else:
        summary = train(
            args.run_dir,
            env_config=env_config,
            training=training,
            num_steps=args.steps,
            seed=args.seed,
            progress=not args.quiet,
            overlap=not args.alternate,
            max_seconds=max_seconds,
        )
    state = "interrupted" if summary["interrupted"] else "done"
    print(
        f"{state}: {summary['env_steps']} env steps, {summary['learner_steps']} learner steps, "
        f"{summary['episodes']} episodes in {summary['seconds']:.0f} s; recent return "
        f"{summary['recent_return']:.2f}, prey caught {summary['recent_prey_caught']:.2f}; "
        f"run directory {summary['run_dir']}"
    )
    if args.distributed:
        rates = ", ".join(f"{r:.0f}" for r in summary["actor_env_steps_per_second"])
        print(f"  actor env steps/s: {rates}; actor restarts {summary['actor_restarts']}, "
              f"learner restarts {summary['learner_restarts']}")
    return 0


def _ray_options(args: argparse.Namespace, training):
    """``RayOptions`` from --ray-address, --actors and --envs-per-actor."""
    from simfish_rl.distributed import RayOptions

    envs = args.envs_per_actor if args.envs_per_actor is not None else training.num_envs
    return RayOptions(address=args.ray_address, num_actors=args.actors or DEFAULT_ACTORS,
                      envs_per_actor=envs, jax_cache_dir=_cache_for_workers(args))


def _cache_for_workers(args: argparse.Namespace) -> str | None:
    """The compilation cache folder Ray workers share with this process (None: none)."""
    cache = getattr(args, "compile_cache_dir", None)
    return None if cache is None else str(cache)


def _check_distributed(args: argparse.Namespace) -> None:
    """Ray options without --distributed are an error, not silently ignored."""
    given = [flag for flag, value in (("--ray-address", args.ray_address),
                                      ("--actors", args.actors),
                                      ("--envs-per-actor", getattr(args, "envs_per_actor", None)))
             if value is not None]
    if given and not args.distributed:
        raise SimFishError(f"{', '.join(given)} need --distributed")


def _evaluate(args: argparse.Namespace) -> int:
    from simfish_rl.eval_simfish_agent import eval_agent

    _check_distributed(args)
    kwargs = dict(num_episodes=args.episodes, log_subdir=args.label, seed=args.seed,
                  epsilon=args.epsilon, overrides=_overrides(args), progress=not args.quiet)
    if args.distributed:
        from simfish_rl.distributed import RayOptions, evaluate_distributed

        options = RayOptions(address=args.ray_address, num_actors=args.actors or DEFAULT_ACTORS,
                             jax_cache_dir=_cache_for_workers(args))
        summaries = evaluate_distributed(args.config, args.run_dir, options=options, **kwargs)
    else:
        summaries = eval_agent(args.config, args.run_dir, sediment=args.sediment,
                               num_parallel=args.parallel, **kwargs)
    returns = [s["episode_return"] for s in summaries]
    lengths = [s["episode_length"] for s in summaries]
    print(
        f"evaluated {len(summaries)} episodes: mean return {sum(returns) / len(returns):.3f}, "
        f"mean length {sum(lengths) / len(lengths):.1f}; logs in "
        f"{Path(args.run_dir) / 'logs' / args.label}"
    )
    return 0


def _stimulus(args: argparse.Namespace) -> int:
    import yaml

    from simfish.io.stimuli import StimulusError, stimulus_from_description, write_stimulus

    try:
        description = yaml.safe_load(Path(args.description).read_text())
    except OSError as err:
        raise StimulusError(f"{args.description}: cannot read ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise StimulusError(f"{args.description}: unreadable YAML/JSON ({err})") from None
    if not isinstance(description, dict):
        raise StimulusError(f"{args.description}: expected a mapping (num_steps, fish, prey, predator)")
    try:
        stimulus = stimulus_from_description(description)
    except StimulusError as err:
        raise StimulusError(f"{args.description}: {err}") from None
    path = write_stimulus(args.output, stimulus.prey_loc, stimulus.predator_loc,
                          description={"source": str(args.description)})
    print(f"wrote {path}: {stimulus.num_prey} prey stimuli, "
          f"{'a' if stimulus.predator_loc is not None else 'no'} predator, "
          f"{stimulus.num_steps} steps")
    return 0


def _show_eyes(args: argparse.Namespace) -> int:
    from simfish.tools.show_eyes import save_eyes_picture

    cfg = _load(args)
    path = save_eyes_picture(cfg, args.out, seed=args.seed, steps=args.steps)
    print(f"wrote {path}")
    return 0


def _render(args: argparse.Namespace) -> int:
    from simfish.tools.episodes import actions_for
    from simfish.tools.render import render_episode

    result = render_episode(
        args.episode, args.output, crop_px=args.crop_px, fps=args.fps, steps=args.steps,
        png_every=args.png_every, actions=actions_for(args.episode, args.actions),
        progress=not args.quiet,
    )
    print(f"wrote {result.path}: {result.frames} frames of {result.size[0]}x{result.size[1]} "
          f"at {args.fps} fps in {result.seconds:.1f} s"
          + (f"; {len(result.pngs)} PNG frames beside it" if result.pngs else ""))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from simfish.tools import plots
    from simfish.tools.episodes import actions_for, read_episodes

    if args.what == "training":
        path = plots.plot_training(args.paths, args.output, window=args.window)
    else:
        if len(args.paths) != 1:
            raise SimFishError(f"plot {args.what} takes one episode folder, got {len(args.paths)}")
        episodes = read_episodes(args.paths[0], label=args.label)
        if args.what == "trajectories":
            path = plots.plot_trajectories(episodes, args.output, title=str(args.paths[0]))
        else:
            path = plots.plot_bouts(episodes, actions_for(args.paths[0], args.actions),
                                    args.output, before=args.before)
    print(f"wrote {path}")
    return 0


def _actions(args: argparse.Namespace) -> int:
    from simfish.tools import plots
    from simfish.tools.episodes import actions_for

    path = plots.plot_actions(actions_for(None, args.actions), args.output)
    print(f"wrote {path}")
    return 0


def _analyse(args: argparse.Namespace) -> int:
    from simfish.tools import analysis, plots
    from simfish.tools.episodes import actions_for, read_episodes

    episodes = read_episodes(args.path, label=args.label)
    actions = actions_for(args.path, args.actions)
    stem = Path(args.output) if args.output else None
    if args.what == "hunting":
        sequences = analysis.analyse_hunting(
            episodes, actions, max_distance_mm=args.max_distance_mm,
            max_azimuth_deg=args.max_azimuth_deg, min_bouts=args.min_bouts)
        csv_path = stem or Path("hunting.csv")
        analysis.write_csv(csv_path, analysis.hunting_rows(sequences), analysis.HUNTING_FIELDS)
        figure = plots.plot_hunting(sequences, csv_path.with_suffix(".png"))
        print(analysis.hunting_table(analysis.hunting_summary(sequences)))
        print(f"wrote {csv_path} (one row per bout) and {figure}")
    else:
        names, corr = analysis.neuron_correlations(episodes, actions)
        csv_path = stem or Path("neurons.csv")
        analysis.write_csv(csv_path, analysis.neuron_rows(names, corr), ["unit", *names])
        figure = plots.plot_neurons(names, corr, csv_path.with_suffix(".png"))
        print(f"{corr.shape[0]} units x {len(names)} variables from {len(episodes)} episodes; "
              f"wrote {csv_path} and {figure}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from simfish.tools.report import build_report

    path = build_report(args.run_dir, args.output, label=args.label, video=not args.no_video,
                        progress=not args.quiet)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


_COMMANDS: Mapping[str, Callable[[argparse.Namespace], int]] = MappingProxyType(
    {
        "config": _config_show,
        "simulate": _simulate,
        "bench": _bench,
        "train": _train,
        "evaluate": _evaluate,
        "stimulus": _stimulus,
        "show-eyes": _show_eyes,
        "render": _render,
        "plot": _plot,
        "actions": _actions,
        "analyse": _analyse,
        "report": _report,
    }
)


# ---------------------------------------------------------------------------
# Parser.


def _add_config_options(p: argparse.ArgumentParser, default: str | None = "normal") -> None:
    p.add_argument(
        "--config",
        "-c",
        default=default,
        required=default is None,
        metavar="NAME_OR_PATH",
        help=f"preset name or YAML file (default: {default})",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set prey.num=50 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``simfish`` command."""
    parser = argparse.ArgumentParser(
        prog="simfish", description="SimFish: a virtual larval zebrafish in JAX."
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    parser.add_argument(
        "--compile-cache", metavar="DIR|off", default=None,
        help=f"JAX persistent compilation cache folder (default: ${COMPILE_CACHE_ENV}, else "
             "~/.cache/simfish/jax for train, evaluate, simulate and show-eyes; 'off' disables it)")
    parser.add_argument(
        "--cpu-devices", metavar="N|auto", default=None,
        help="split the CPU into N JAX devices over which vectorised worlds are spread "
             "(default: auto, one per usable core, for bench sim, bench env and simulate; "
             "JAX's single device, or $JAX_NUM_CPU_DEVICES, for the other commands)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("config", help="show a resolved environment configuration")
    p.add_argument("action", choices=["show"])
    p.add_argument("config", metavar="NAME_OR_PATH", help="preset name or YAML file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a value")

    p = sub.add_parser("simulate", help="run N worlds for M steps with a random policy")
    _add_config_options(p)
    p.add_argument("--worlds", type=_positive_int, default=16, help="worlds run in parallel")
    p.add_argument("--steps", type=_positive_int, default=200, help="steps per world")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--policy", choices=["random", "capture"], default="random",
                   help="random: uniform actions; capture: always the first capture bout")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    p = sub.add_parser("bench", help="measure simulator speed")
    p.add_argument("what", choices=["sim", "env", "train"],
                   help="sim: world dynamics only; env: dynamics + vision (full step); "
                        "train: training env steps/s, learner steps/s and where time goes")
    _add_config_options(p)
    p.add_argument("--batch", type=_positive_int, nargs="+", default=[1, 64, 256],
                   help="batch sizes (worlds stepped together)")
    p.add_argument("--steps", type=_positive_int, default=200, help="timed steps per batch size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seconds", type=float, default=60.0,
                   help="train: seconds of training measured (after compiling)")
    p.add_argument("--mode", choices=["auto", "device", "host"], default="auto",
                   help="train: the one-device loop, the host loop, or what `simfish train` "
                        "uses here (auto: device on a GPU)")
    p.add_argument("--profile", default="users", choices=["users", "quick"],
                   help="train: training options profile (default users)")
    p.add_argument("--num-envs", type=_positive_int, default=None, help="train: worlds")
    p.add_argument("--train", action="append", metavar="KEY=VALUE",
                   help="train: override a training option (repeatable)")
    p.add_argument("--iterations-per-call", type=_positive_int, default=10,
                   help="train: device loop iterations per compiled call")

    p = sub.add_parser("stimulus", help="write a stimulus HDF5 file from a YAML description")
    p.add_argument("description", metavar="DESCRIPTION.yaml",
                   help="num_steps, fish {x, y, angle}, prey [{kind: sweep, ...}], "
                        "predator {kind: pass|loom, ...} (see simfish.io.stimuli)")
    p.add_argument("output", metavar="OUTPUT.h5", help="the stimulus file to write")

    p = sub.add_parser("show-eyes", help="save a PNG of what the fish sees")
    _add_config_options(p)
    p.add_argument("--out", default="eyes.png", help="PNG file to write (default: eyes.png)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode shown")
    p.add_argument("--steps", type=int, default=0,
                   help="random steps taken before the picture (default 0: the first step)")

    p = sub.add_parser("train", help="train an R2D2 agent (resumes if the run dir has a checkpoint)")
    p.add_argument("--config", "-c", default=None, metavar="NAME_OR_PATH",
                   help="preset or YAML file (default: normal for a new run; a resumed run "
                        "keeps its recorded config)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override an environment config value, e.g. --set prey.num=50")
    p.add_argument("--run-dir", required=True, metavar="DIR", help="run directory")
    p.add_argument("--steps", type=_positive_int, default=1_000_000,
                   help="total environment steps to reach (over all worlds)")
    p.add_argument("--seed", type=int, default=0, help="seed of a new run")
    p.add_argument("--num-envs", type=_positive_int, default=None,
                   help="worlds stepped in parallel (training option num_envs)")
    p.add_argument("--profile", default=None, choices=["users", "quick"],
                   help="training options: users (their defaults, SPEC 6) or quick (short "
                        "sequences, small replay: demos and small worlds); default users")
    p.add_argument("--train", action="append", metavar="KEY=VALUE",
                   help="override a training option, e.g. --train batch_size=16")
    p.add_argument("--alternate", action="store_true",
                   help="alternate acting and learning on one thread (reproducible from the "
                        "seed; the default overlaps them on two threads, ~13%% faster)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop (with a checkpoint) after this many minutes")
    p.add_argument("--device-loop", action=argparse.BooleanOptionalAction, default=None,
                   help="acting, replay and learning in one compiled loop on the device "
                        "(default: on when JAX's backend is a GPU)")
    p.add_argument("--iterations-per-call", type=_positive_int, default=10,
                   help="device loop: iterations (sequence_period x num_envs env steps "
                        "each) per compiled call (default 10)")
    _add_distributed_options(p, "actor processes")
    p.add_argument("--envs-per-actor", type=_positive_int, default=None,
                   help="with --distributed: worlds each actor process steps (default: the "
                        "training option num_envs)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    p = sub.add_parser("evaluate", help="play episodes with a trained agent, logging them to HDF5")
    p.add_argument("--run-dir", required=True, metavar="DIR", help="training run directory")
    p.add_argument("--config", "-c", default=None, metavar="NAME_OR_PATH",
                   help="environment to evaluate in (default: the run's own)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override an environment config value")
    p.add_argument("--episodes", type=_positive_int, default=10, help="episodes to play")
    p.add_argument("--parallel", type=_positive_int, default=1, metavar="E",
                   help="episodes played at once in vectorised worlds (same files as 1)")
    p.add_argument("--label", default="eval_model",
                   help="log sub-folder: files go to DIR/logs/LABEL/logs_<k>.hdf5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epsilon", type=float, default=None,
                   help="exploration rate (default: the run's evaluation_epsilon)")
    p.add_argument("--sediment", choices=("image", "record"), default="image",
                   help="log the sediment as an image (default) or only what regenerates it")
    _add_distributed_options(p, "workers the episodes are spread over")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    p = sub.add_parser("render", help="render an episode log to an MP4 video (needs [video])")
    p.add_argument("episode", metavar="EPISODE.hdf5", help="an episode log (logs_<k>.hdf5)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.mp4", help="video to write")
    p.add_argument("--crop-px", type=float, default=600.0,
                   help="width of the view around the fish, arena px (10 px = 1 mm; default 600)")
    p.add_argument("--fps", type=_positive_int, default=15, help="frames per second (default 15)")
    p.add_argument("--steps", default=None, metavar="A:B",
                   help="time points to render, a Python slice of 0..T (default: all)")
    p.add_argument("--png-every", type=_positive_int, default=None, metavar="K",
                   help="also save every K-th frame as OUT_<t>.png")
    p.add_argument("--actions", default=None, metavar="FILE",
                   help="action set (.h5 or .json; default: the run's actions.h5, else built-in)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    p = sub.add_parser("plot", help="figures of a run: trajectories, training, bouts (needs [plots])")
    p.add_argument("what", choices=["trajectories", "training", "bouts"])
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="trajectories/bouts: RUN_DIR/logs/LABEL (or one episode file); "
                        "training: one or more run directories")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png", help="PNG to write")
    p.add_argument("--label", default=None, help="label under RUN_DIR/logs/ when PATH is a run")
    p.add_argument("--window", type=_positive_int, default=None,
                   help="training: moving-average window in episodes (default: 1/25 of them)")
    p.add_argument("--before", type=_positive_int, default=5,
                   help="bouts: bouts counted up to each capture / escape (default 5)")
    p.add_argument("--actions", default=None, metavar="FILE", help="action set (.h5 or .json)")

    p = sub.add_parser("actions", help="the action set: plot its distance/angle distributions")
    p.add_argument("action", choices=["plot"])
    p.add_argument("--actions", default=None, metavar="FILE",
                   help="action set (.h5 or .json; default: built-in)")
    p.add_argument("-o", "--output", default="actions.png", metavar="OUT.png")

    p = sub.add_parser("analyse", help="hunting sequences vs larval data, or LSTM unit tuning")
    p.add_argument("what", choices=["hunting", "neurons"])
    p.add_argument("path", metavar="PATH", help="RUN_DIR/logs/LABEL, a run directory or a file")
    p.add_argument("-o", "--output", default=None, metavar="OUT.csv",
                   help="CSV to write (default hunting.csv / neurons.csv); the figure goes "
                        "beside it as OUT.png")
    p.add_argument("--label", default=None, help="label under RUN_DIR/logs/ when PATH is a run")
    p.add_argument("--actions", default=None, metavar="FILE", help="action set (.h5 or .json)")
    p.add_argument("--max-distance-mm", type=float, default=10.0,
                   help="hunting: a prey farther than this is not a target (default 10)")
    p.add_argument("--max-azimuth-deg", type=float, default=90.0,
                   help="hunting: a prey beyond +-this azimuth is not a target (default 90)")
    p.add_argument("--min-bouts", type=_positive_int, default=2,
                   help="hunting: shortest aborted sequence kept (default 2)")

    p = sub.add_parser("report", help="one self-contained HTML page about a run")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("-o", "--output", default=None, metavar="OUT.html",
                   help="page to write (default RUN_DIR/report.html)")
    p.add_argument("--label", default=None, help="evaluation label shown (default: eval_model "
                                                 "or the only one)")
    p.add_argument("--no-video", action="store_true", help="do not render an example episode")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def _add_distributed_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--distributed", action="store_true",
                   help="run on Ray (pip install 'simfish[distributed]'; see docs/distributed.md)")
    p.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                   help="with --distributed: the Ray cluster to join (default: start a local Ray)")
    p.add_argument("--actors", type=_positive_int, default=None,
                   help=f"with --distributed: {what} (default {DEFAULT_ACTORS})")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``simfish`` with ``argv`` (default ``sys.argv[1:]``) in this process; the exit status.

    The console command is ``console_main``, which may restart first.
    """
    return _run(build_parser().parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    """Runs the parsed command line: logging, CPU devices, compilation cache, the command."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("jax").setLevel(logging.WARNING)
    if huge_pages_on():
        log.debug("malloc's large blocks on huge pages (GLIBC_TUNABLES=%s)",
                  os.environ["GLIBC_TUNABLES"])
    try:
        devices = cpu_device_count(command_name(args), args.cpu_devices)
        if devices is not None:
            _split_cpu(devices)
        cache = compile_cache_dir(args.command, args.compile_cache)
        if cache is not None:
            _enable_compile_cache(cache)
        args.compile_cache_dir = cache
        return _COMMANDS[args.command](args)
    except SimFishError as err:
        print(f"simfish: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simfish: interrupted", file=sys.stderr)
        return 130


def console_main() -> None:
    """The ``simfish`` console command: ``main``, restarted with huge pages when they help.

    ``train`` and ``bench train`` restart once as ``python -m simfish.tools.cli``
    with ``$GLIBC_TUNABLES`` extended (``huge_pages_environment``); the same
    process id, arguments and streams carry on. ``SIMFISH_HUGE_PAGES=0``
    turns this off.
    """
    args = build_parser().parse_args()
    restart_with_huge_pages(command_name(args),
                            [sys.executable, "-m", "simfish.tools.cli", *sys.argv[1:]])
    sys.exit(_run(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
