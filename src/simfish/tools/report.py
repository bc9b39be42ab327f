"""A one-page HTML report of a run: configuration, learning curves, behaviour, hunting, a video.

The page is self-contained (the figures are embedded as base64 PNGs); only the
example video is a separate file beside it, linked from the page.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from simfish.io.atomic import atomic_write_text
from simfish.io.logs import list_labels
from simfish.tools import analysis, plots
from simfish.tools.episodes import ToolsError, actions_for, read_episodes

log = logging.getLogger(__name__)

_CONFIG_KEYS = (
    ("arena", ("width", "height", "dark_fraction")),
    ("prey", ("num", "reproduction_mode", "cloud_num")),
    ("predator", ("probability_per_epoch_step", "immunity_steps")),
    ("salt", ("enabled",)),
    ("reward", ("consumption", "predator_caught", "predator_avoidance", "wall_touch")),
)


def _config_rows(run: Path) -> list[tuple[str, str]]:
    """(name, value) rows summarising the run's environment, training and meta records."""
    import yaml

    rows: list[tuple[str, str]] = []
    env_file = run / "env_config.yaml"
    if env_file.is_file():
        try:
            env = yaml.safe_load(env_file.read_text()) or {}
        except yaml.YAMLError as err:
            raise ToolsError(f"{env_file}: unreadable YAML ({err})") from None
        rows.append(("max_sim_steps_per_episode", str(env.get("max_sim_steps_per_episode"))))
        for section, keys in _CONFIG_KEYS:
            for key in keys:
                if isinstance(env.get(section), dict) and key in env[section]:
                    rows.append((f"{section}.{key}", str(env[section][key])))
    for name, keys in (("training_config.json", ("num_envs", "batch_size", "trace_length",
                                                 "learning_rate", "discount")),
                       ("meta.json", ("seed", "simfish_version", "jax_version", "started"))):
        path = run / name
        if path.is_file():
            try:
                record = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise ToolsError(f"{path}: unreadable JSON ({err})") from None
            rows.extend((k, str(record[k])) for k in keys if k in record)
    progress = run / "checkpoints" / "progress.json"
    if progress.is_file():
        try:
            record = json.loads(progress.read_text())
            rows.extend((k, str(record[k])) for k in ("env_steps", "learner_steps", "episodes")
                        if k in record)
        except json.JSONDecodeError:
            pass
    return rows


def _img(path: Path, alt: str) -> str:
    """An <img> tag with the PNG embedded."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def build_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                 label: str | None = None, video: bool = True, progress: bool = False) -> Path:
    """Writes ``out`` (default ``RUN_DIR/report.html``) for a run directory.

    Args:
      run_dir: a training run directory.
      label: the evaluation label whose episodes are shown (default: the only one,
        else ``eval_model`` if present, else the first).
      video: render the label's first episode beside the report (needs the
        ``[video]`` extra; skipped with a note when it is missing).

    Raises:
      ToolsError: no such directory.
    """
    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise ToolsError(f"{run}: no such run directory")
    out = Path(out) if out is not None else run / "report.html"
    sections: list[str] = []
    rows = _config_rows(run)
    table = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
                    for k, v in rows)
    sections.append(f"<h2>Configuration</h2><table>{table or '<tr><td>no records</td></tr>'}"
                    "</table>")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if (run / "episodes.csv").is_file():
            try:
                png = plots.plot_training([run], tmp / "curves.png")
                sections.append(f"<h2>Learning curves</h2>{_img(png, 'learning curves')}")
            except ToolsError as err:
                sections.append(f"<h2>Learning curves</h2><p>{html.escape(str(err))}</p>")
        else:
            sections.append("<h2>Learning curves</h2><p>no episodes.csv in this directory</p>")
        labels = list_labels(run) if (run / "logs").is_dir() else []
        if label is None and labels:
            label = labels[0] if len(labels) == 1 or "eval_model" not in labels else "eval_model"
        if label is None:
            sections.append("<h2>Episodes</h2><p>no evaluation episodes under logs/ "
                            "(run <code>simfish evaluate</code> first)</p>")
        else:
            episodes = read_episodes(run, label=label)
            actions = actions_for(episodes[0][0])
            sections.append(f"<h2>Episodes: label <code>{html.escape(label)}</code> "
                            f"({len(episodes)} episodes)</h2>")
            png = plots.plot_trajectories(episodes, tmp / "traj.png")
            sections.append(f"<h3>Trajectories</h3>{_img(png, 'trajectories')}")
            png = plots.plot_bouts(episodes, actions, tmp / "bouts.png")
            sections.append(f"<h3>Bout usage</h3>{_img(png, 'bout usage')}")
            sequences = analysis.analyse_hunting(episodes, actions)
            summary = analysis.hunting_summary(sequences)
            sections.append("<h3>Hunting</h3><pre>"
                            f"{html.escape(analysis.hunting_table(summary))}</pre>")
            if sequences:
                png = plots.plot_hunting(sequences, tmp / "hunting.png")
                sections.append(_img(png, "hunting summary"))
            sections.append(_video_section(episodes[0][0], out, video, progress))
    body = "\n".join(sections)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>SimFish run {html.escape(run.name)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1400px; margin: 2em auto; color: #222; }}
img {{ max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }}
table {{ border-collapse: collapse; }} td {{ border: 1px solid #ccc; padding: 2px 8px; }}
pre {{ background: #f5f5f5; padding: 0.8em; }}
</style></head><body>
<h1>SimFish run <code>{html.escape(str(run))}</code></h1>
{body}
</body></html>
"""
    return atomic_write_text(out, page)


def _video_section(episode: Path, out: Path, video: bool, progress: bool) -> str:
    """Renders the example episode beside the report (when asked and possible) and links it."""
    target = out.with_name(f"{out.stem}_episode.mp4")
    note = ""
    if video:
        from simfish.tools.render import render_episode

        try:
            render_episode(episode, target, progress=progress)
        except ToolsError as err:
            note = f"<p>no video rendered: {html.escape(str(err))}</p>"
    if target.is_file():
        return (f'<h3>Example episode</h3><p><a href="{html.escape(target.name)}">'
                f"{html.escape(target.name)}</a> (rendered from {html.escape(str(episode))})</p>"
                f'<video controls width="100%" src="{html.escape(target.name)}"></video>')
    return f"<h3>Example episode</h3>{note or '<p>no video (run with --video)</p>'}"


def report_summary(path: Path) -> dict[str, Any]:
    """Size of a written report (for the CLI's message)."""
    return {"path": path, "bytes": path.stat().st_size}
