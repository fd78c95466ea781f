"""Figures of the analysis reports: matplotlib with the Agg backend (PNG) and a self-contained HTML scatter.

Every function writes one file atomically and returns its path. Spectrograms are features ``[C, M, T]`` or
``[M, T]`` in [-1, 1] (channels are averaged) drawn with low bins at the bottom.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from runtime.files import atomic_path, write_text

log = logging.getLogger(__name__)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    out = Path(path)
    plt.close(fig)
    return out


def _image(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    return x.mean(axis=0) if x.ndim == 3 else x


def spectrogram_grid(path: str | Path, rows: Sequence[Sequence[np.ndarray]], *, row_titles: Sequence[str] = (),
                     col_titles: Sequence[str] = (), diff_last: bool = False) -> Path:
    """A grid of spectrograms, one list of features per row.

    Parameters
    ----------
    rows : sequence of sequences of arrays ``[C, M, T]`` or ``[M, T]``
        Features in [-1, 1]; every row has the same number of panels.
    row_titles, col_titles : sequences of str
    diff_last : bool
        Draw the last panel of each row as a difference in [-1, 1] (diverging colours) rather than a spectrogram.
    """
    plt = _pyplot()
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.9 * n_cols, 1.6 * n_rows), squeeze=False)
    for i, row in enumerate(rows):
        for j, feats in enumerate(row):
            ax = axes[i, j]
            is_diff = diff_last and j == len(row) - 1
            ax.imshow(_image(feats), origin="lower", aspect="auto", cmap="RdBu_r" if is_diff else "magma",
                      vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=8)
            if j == 0 and i < len(row_titles):
                ax.set_ylabel(row_titles[i], fontsize=7)
        for j in range(len(row), n_cols):
            axes[i, j].axis("off")
    return _save(fig, path)


def audio_spectrogram_png(path: str | Path, audio: np.ndarray, sample_rate: int, *, title: str,
                          n_fft: int = 4096, hop: int = 512, range_db: float = 80.0) -> Path:
    """Spectrogram of a recording of any length (``[N]`` or ``[C, N]``, channels averaged) on a log-frequency axis
    from 20 Hz, in dB below its loudest bin (``range_db`` shown); a kick's body and pitch sweep sit at the bottom.
    """
    x = np.asarray(audio, dtype=np.float64)
    x = x.mean(axis=0) if x.ndim == 2 else x
    log.debug(f"spectrogram of {x.shape[-1]} samples at {sample_rate} Hz: {n_fft}-point frames every {hop}")
    x = np.pad(x, (n_fft // 2, n_fft // 2 + hop))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=-1)).T ** 2                     # [n_fft / 2 + 1, frames]
    db = 10 * np.log10(np.maximum(power, 1e-20))
    db = np.maximum(db - db.max(), -range_db)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    times = np.arange(db.shape[1]) * hop / sample_rate
    keep = freqs >= 20.0
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.6))
    mesh = ax.pcolormesh(times, freqs[keep], db[keep], shading="auto", cmap="magma")
    ax.set_yscale("log")
    ax.set(xlabel="time (s)", ylabel="frequency (Hz)", title=title)
    fig.colorbar(mesh, ax=ax, label="dB re peak")
    return _save(fig, Path(path))


def scatter_png(path: str | Path, xy: np.ndarray, values: Sequence, *, title: str, categorical: bool) -> Path:
    """2D scatter ``xy [N, 2]`` coloured by ``values [N]`` (a legend for categories, a colour bar for numbers)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    if categorical:
        names = [str(v) for v in values]
        for k, name in enumerate(sorted(set(names))):
            mask = np.array([n == name for n in names])
            ax.scatter(xy[mask, 0], xy[mask, 1], s=12, color=plt.cm.tab10(k % 10), label=name)
        ax.legend(fontsize=7, markerscale=1.5, loc="best")
    else:
        points = ax.scatter(xy[:, 0], xy[:, 1], s=12, c=np.asarray(values, dtype=float), cmap="viridis")
        fig.colorbar(points, ax=ax)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def curve_png(path: str | Path, x: Sequence[float], curves: Mapping[str, Sequence[float]], *, title: str,
              xlabel: str, ylabel: str, mark_x: float | None = None) -> Path:
    """Line plot of one or more curves over ``x``; ``mark_x`` draws a vertical marker (e.g. the chosen size)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, ys in curves.items():
        ax.plot(list(x), list(ys), marker="o", label=name)
    if mark_x is not None:
        ax.axvline(mark_x, color="grey", linestyle="--")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    return _save(fig, path)


def histogram_png(path: str | Path, groups: Mapping[str, Sequence[float]], *, title: str, xlabel: str) -> Path:
    """Overlaid histograms of several groups of values on shared bins."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    values = [np.asarray(v, dtype=float) for v in groups.values()]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(1)
    bins = np.linspace(finite.min(), finite.max() + 1e-9, 25)
    for name, v in zip(groups, values):
        ax.hist(v[np.isfinite(v)], bins=bins, alpha=0.5, label=name)
    ax.set(title=title, xlabel=xlabel, ylabel="count")
    ax.legend(fontsize=8)
    return _save(fig, path)


_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:1em}} svg{{border:1px solid #ccc}} #tip{{font-size:12px;min-height:3em}}</style>
</head><body><h3>{title}</h3>
<label>colour by <select id="by"></select></label>
<div id="tip">hover a point</div>
<svg id="plot" width="640" height="520"></svg>
<script>
const DATA = {data};
const svg = document.getElementById("plot"), sel = document.getElementById("by"), tip = document.getElementById("tip");
const W = 640, H = 520, P = 20, NS = "http://www.w3.org/2000/svg";
const xs = DATA.x, ys = DATA.y;
const sx = v => P + (v - Math.min(...xs)) / ((Math.max(...xs) - Math.min(...xs)) || 1) * (W - 2 * P);
const sy = v => H - P - (v - Math.min(...ys)) / ((Math.max(...ys) - Math.min(...ys)) || 1) * (H - 2 * P);
const PAL = ["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2","#7f7f7f","#bcbd22","#17becf"];
function colours(col) {{
  const v = DATA.columns[col];
  if (typeof v.find(a => a !== null) === "number") {{
    const f = v.filter(a => a !== null), lo = Math.min(...f), hi = Math.max(...f);
    return v.map(a => a === null ? "#ccc" : `hsl(${{240 - 240 * (a - lo) / ((hi - lo) || 1)}},70%,45%)`);
  }}
  const names = [...new Set(v.map(String))].sort();
  return v.map(a => PAL[names.indexOf(String(a)) % PAL.length]);
}}
function draw() {{
  svg.innerHTML = "";
  const c = colours(sel.value);
  xs.forEach((x, i) => {{
    const p = document.createElementNS(NS, "circle");
    p.setAttribute("cx", sx(x)); p.setAttribute("cy", sy(ys[i])); p.setAttribute("r", 4);
    p.setAttribute("fill", c[i]); p.setAttribute("fill-opacity", 0.8);
    p.onmouseover = () => {{ tip.textContent = Object.keys(DATA.columns).map(k => k + ": " + DATA.columns[k][i]).join("  |  ") + "  |  " + (DATA.names[i] || ""); }};
    svg.appendChild(p);
  }});
}}
Object.keys(DATA.columns).forEach(k => {{ const o = document.createElement("option"); o.value = o.textContent = k; sel.appendChild(o); }});
sel.onchange = draw; draw();
</script></body></html>
"""


def scatter_html(path: str | Path, xy: np.ndarray, columns: Mapping[str, Sequence], *, title: str,
                 names: Sequence[str] = ()) -> Path:
    """Interactive scatter as one self-contained HTML file (inline SVG + a few lines of JS, no network).

    Parameters
    ----------
    xy : ndarray ``[N, 2]``
    columns : mapping name -> values ``[N]``
        Selectable colourings (numbers get a colour ramp, anything else a palette); shown on hover.
    names : sequence of str, optional
        Per-point label shown on hover (e.g. file names).
    """
    from trainer.analysis.reports import jsonable

    data = {"x": np.round(xy[:, 0], 5).tolist(), "y": np.round(xy[:, 1], 5).tolist(),
            "columns": {k: jsonable(list(v)) for k, v in columns.items()}, "names": list(map(str, names))}
    text = _HTML.format(title=html.escape(title), data=json.dumps(data).replace("</", "<\\/"))
    return write_text(path, text)
