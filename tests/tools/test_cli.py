"""The command-line tool: output, exit codes and one-line errors."""

import os
import platform
import subprocess
import sys

import pytest
import yaml

from simfish.config import load_config
from simfish.tools.cli import huge_pages_environment, main, transparent_huge_pages


def test_config_show_prints_loadable_yaml(capsys, tmp_path):
    assert main(["config", "show", "sparse", "--set", "prey.num=7"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# resolved from ")
    path = tmp_path / "shown.yaml"
    path.write_text(out)
    cfg = load_config(path)
    assert cfg.prey.num == 7
    assert cfg.prey.cloud_num == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["config", "show", "nope.yaml"], "nope.yaml: no such config file"),
        (["config", "show", "normal", "--set", "prey.colour=1"], "override 'prey.colour'"),
        (["config", "show", "normal", "--set", "prey.num"], "expected KEY=VALUE"),
        (["config", "show", "normal", "--set", "prey.num=-2"], "'prey.num' = -2 must be >= 0"),
    ],
)
def test_bad_input_is_one_line_on_stderr_with_exit_2(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("simfish: error: ")
    assert message in lines[0]


def test_bad_yaml_file_names_file_and_line(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("arena:\n  width: [\n")
    assert main(["config", "show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "unreadable YAML at line" in err
    assert "Traceback" not in err


def test_console_script_runs_without_traceback(tmp_path):
    raw = load_config("normal").to_dict()
    raw["prey"]["p_slow"] = 0.9
    raw["prey"]["p_fast"] = 0.3
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "simfish.tools.cli", "config", "show", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"simfish: error: {path}: 'prey.p_slow + prey.p_fast' = 1.2 must be <= 1"
    )


def test_stimulus_command_writes_a_loadable_file(tmp_path, capsys):
    from simfish.io.stimuli import load_stimulus

    desc = tmp_path / "sweep.yaml"
    desc.write_text(
        "num_steps: 50\n"
        "fish: {x: 2500, y: 2500, angle: 1.5707}\n"
        "prey: [{kind: sweep, distance_px: 40, lateral_from_px: 50, lateral_to_px: -50,"
        " speed_px_per_step: 2}]\n"
    )
    out = tmp_path / "sweep.h5"
    assert main(["stimulus", str(desc), str(out)]) == 0
    assert "1 prey stimuli" in capsys.readouterr().out
    stim = load_stimulus(out)
    assert stim.prey_loc.shape == (1, 50, 2)
    desc.write_text("num_steps: 50\nprey: [{kind: wiggle}]\n")
    assert main(["stimulus", str(desc), str(tmp_path / "bad.h5")]) == 2
    err = capsys.readouterr().err
    assert str(desc) in err and "wiggle" in err
    assert not (tmp_path / "bad.h5").exists()


def test_show_eyes_writes_a_png(tmp_path, capsys):
    out = tmp_path / "eyes.png"
    assert main(["show-eyes", "--config", "small", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_prints_a_summary(capsys):
    assert main(["simulate", "--config", "small", "--worlds", "2", "--steps", "60", "-q"]) == 0
    out = capsys.readouterr().out
    assert "simulated 2 worlds x 60 steps of 'small'" in out
    assert "episodes_finished            2" in out  # 50-step episodes


def test_bench_reports_rates_and_memory(capsys):
    from simfish.tools import bench

    rows = bench.run("sim", load_config("small"), batch_sizes=[2], steps=4)
    assert rows[0]["batch"] == 2 and rows[0]["steps_per_second"] > 0
    assert rows[0]["state_bytes_per_world"] > 0
    table = bench.format_table("sim", rows)
    assert "world dynamics only" in table and "XLA KB/world" in table


def test_compile_cache_folder_precedence(tmp_path):
    from simfish.tools.cli import compile_cache_dir

    home = {"XDG_CACHE_HOME": str(tmp_path)}
    assert compile_cache_dir("evaluate", None, home) == tmp_path / "simfish" / "jax"
    assert compile_cache_dir("train", None, home) == tmp_path / "simfish" / "jax"
    # bench measures first-run compile times unless a cache is asked for.
    assert compile_cache_dir("bench", None, home) is None
    assert compile_cache_dir("bench", str(tmp_path / "c"), home) == tmp_path / "c"
    # JAX's own variable: JAX reads it, SimFish sets nothing.
    assert compile_cache_dir("train", None, {**home, "JAX_COMPILATION_CACHE_DIR": "/x"}) is None
    env = {**home, "SIMFISH_COMPILE_CACHE": str(tmp_path / "env")}
    assert compile_cache_dir("train", None, env) == tmp_path / "env"
    assert compile_cache_dir("train", str(tmp_path / "opt"), env) == tmp_path / "opt"
    for off in ("off", "OFF", "none", "0", ""):
        assert compile_cache_dir("train", off, home) is None
        assert compile_cache_dir("train", None, {**home, "SIMFISH_COMPILE_CACHE": off}) is None


def test_main_points_jax_at_the_compile_cache(monkeypatch, tmp_path, capsys):
    import jax

    calls = []
    monkeypatch.setattr(jax.config, "update", lambda name, value: calls.append((name, value)))
    folder = tmp_path / "cache" / "jax"
    assert main(["--compile-cache", str(folder), "config", "show", "small"]) == 0
    assert calls == [("jax_compilation_cache_dir", str(folder))]
    assert folder.is_dir()
    calls.clear()
    assert main(["--compile-cache", "off", "config", "show", "small"]) == 0
    assert calls == []
    capsys.readouterr()


def test_cpu_device_count_precedence_and_errors():
    from simfish.errors import SimFishError
    from simfish.tools.cli import cpu_device_count

    cores = len(os.sched_getaffinity(0))
    # The world benchmarks and simulate split the CPU by default; the other commands,
    # bench train included (it measures what train gets), leave JAX's default.
    assert cpu_device_count("bench env", None, {}) == cores
    assert cpu_device_count("bench sim", None, {}) == cores
    assert cpu_device_count("simulate", None, {}) == cores
    assert cpu_device_count("bench train", None, {}) is None
    assert cpu_device_count("train", None, {}) is None
    assert cpu_device_count("evaluate", None, {}) is None
    # JAX's own variable: JAX reads it, SimFish sets nothing; the option wins over both.
    assert cpu_device_count("bench env", None, {"JAX_NUM_CPU_DEVICES": "3"}) is None
    assert cpu_device_count("train", "4", {"JAX_NUM_CPU_DEVICES": "3"}) == 4
    assert cpu_device_count("train", "AUTO", {}) == cores
    for bad in ("0", "-2", "two", ""):
        with pytest.raises(SimFishError, match="--cpu-devices"):
            cpu_device_count("bench env", bad, {})


def test_command_name_says_what_bench_measures():
    from simfish.tools.cli import build_parser, command_name

    parse = build_parser().parse_args
    assert command_name(parse(["bench", "train"])) == "bench train"
    assert command_name(parse(["bench", "env"])) == "bench env"
    assert command_name(parse(["simulate"])) == "simulate"


def test_huge_pages_environment_only_where_it_helps(tmp_path):
    glibc = ("glibc", "2.36")
    env = huge_pages_environment("train", {"HOME": "/h"}, glibc, "madvise")
    assert env == {"HOME": "/h", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    # Other tunables are kept.
    env = huge_pages_environment("bench train", {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
                                 glibc, "madvise")
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    # Nothing to gain, or the user decided: run as is.
    assert huge_pages_environment("evaluate", {}, glibc, "madvise") is None
    assert huge_pages_environment("bench env", {}, glibc, "madvise") is None
    assert huge_pages_environment("train", {"SIMFISH_HUGE_PAGES": "0"}, glibc, "madvise") is None
    assert huge_pages_environment(
        "train", {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, glibc, "madvise") is None
    assert huge_pages_environment("train", {}, ("glibc", "2.31"), "madvise") is None
    assert huge_pages_environment("train", {}, ("", ""), "madvise") is None
    assert huge_pages_environment("train", {}, glibc, "always") is None
    assert huge_pages_environment("train", {}, glibc, "never") is None
    assert huge_pages_environment("train", {}, glibc, None) is None

    mode = tmp_path / "enabled"
    mode.write_text("always [madvise] never\n")
    assert transparent_huge_pages(mode) == "madvise"
    assert transparent_huge_pages(tmp_path / "absent") is None


def test_console_main_restarts_train_with_huge_pages(monkeypatch):
    from simfish.tools import cli

    monkeypatch.setattr(cli.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(cli, "transparent_huge_pages", lambda: "madvise")
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("SIMFISH_HUGE_PAGES", raising=False)
    calls = []

    def execve(path, argv, env):
        calls.append((path, argv, env))
        raise SystemExit(0)  # execve does not return

    monkeypatch.setattr(cli.os, "execve", execve)
    monkeypatch.setattr(cli, "_run", lambda args: 7)
    monkeypatch.setattr(sys, "argv", ["simfish", "-v", "train", "--run-dir", "r"])
    with pytest.raises(SystemExit):
        cli.console_main()
    [(path, argv, env)] = calls
    assert path == sys.executable
    assert argv == [sys.executable, "-m", "simfish.tools.cli", "-v", "train", "--run-dir", "r"]
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    # Other commands run in this process.
    monkeypatch.setattr(sys, "argv", ["simfish", "simulate"])
    with pytest.raises(SystemExit) as exit_info:
        cli.console_main()
    assert exit_info.value.code == 7
    assert len(calls) == 1


@pytest.mark.skipif(
    huge_pages_environment("train", {}, platform.libc_ver(), transparent_huge_pages()) is None,
    reason="huge pages would not be used here (not glibc >= 2.35, or the kernel's mode "
           "is not madvise)")
def test_restarted_process_runs_with_the_tunable(tmp_path):
    code = ("import sys; from simfish.tools.cli import console_main; "
            "sys.argv = ['simfish', '-v', 'train', '--config', 'nosuch', '--run-dir', "
            f"{str(tmp_path / 'run')!r}]; console_main()")
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "SIMFISH_HUGE_PAGES")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, env=env)
    assert proc.returncode == 2
    assert "GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in proc.stderr
    assert "nosuch: no such config file" in proc.stderr
