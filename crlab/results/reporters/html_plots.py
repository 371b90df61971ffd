"""SVG plots for the HTML report, drawn by matplotlib (svg backend, no display needed).

One plot per measure (kernel build time, boot-to-prompt time), one line per (kernel, target),
x = the runs of the matrix in order.  The SVG files sit next to report.html under plots/.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("svg")  # before pyplot: headless, deterministic output

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from crlab.results.files import atomic_write  # noqa: E402
from crlab.results.history import TimingPoint  # noqa: E402

PLOTS_DIR = "plots"
MEASURES = {"build_s": "kernel build time (s)", "boot_s": "boot to prompt (s)"}


def write_plots(points: list[TimingPoint], run_dir: Path) -> dict[str, Path]:
    """Write plots/<measure>.svg for each measure some point has; returns measure -> file."""
    runs = list(dict.fromkeys(p.run_id for p in points))
    written: dict[str, Path] = {}
    for measure, title in MEASURES.items():
        series: dict[str, list[tuple[int, float]]] = {}
        for point in points:
            value = getattr(point, measure)
            if value is not None:
                label = f"{point.kernel}/{point.target}"
                series.setdefault(label, []).append((runs.index(point.run_id), float(value)))
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7.5, 3.4))
        try:
            for label, values in sorted(series.items()):
                xs, ys = zip(*values, strict=True)
                ax.plot(xs, ys, marker="o", label=label)
            ax.set_title(title)
            ax.set_ylabel("seconds")
            ax.set_xticks(range(len(runs)))
            ax.set_xticklabels([r.split("-", 1)[-1] for r in runs], rotation=30, ha="right", fontsize=7)
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
            fig.tight_layout()
            path = run_dir / PLOTS_DIR / f"{measure}.svg"
            svg = io.StringIO()
            fig.savefig(svg, format="svg")
            atomic_write(path, svg.getvalue())
            written[measure] = path
        finally:
            plt.close(fig)
    return written
