"""A search's `trials.png`: every trial's score against its MFLOPs.

Each completed trial is a point (held-out `val_main_accuracy` against the
multiply-adds of its deployed main-head network, `tuner.cost`), coloured by its
width and labelled with its trial id; the best trial is ringed. The paper is
marked twice: a star on every trial that sampled the paper's ratios (Table 1's
per-stage ratios rounded onto the search grid, `SearchSpace.default_values`,
which keras-tuner tries first), and a dotted line at the cost of the paper's
own Table 1 network at the best trial's width (the network the search tries to
beat at equal width). A `--max-mflops` budget is drawn as a dashed line.
Trials without a score (failed, over budget, running) are counted in the title.
"""

import math

from keras_googlenet.architecture import PAPER_BLOCKS
from keras_googlenet._internal.figures import new_figure, try_write_png

#: The picture's file name, in the search folder.
TRIALS_CHART = "trials.png"

#: Its size in pixels (width, height).
TRIALS_SIZE = (900, 600)


def is_paper_trial(row, space):
    """Whether a `tuner.folder.trial_rows` row sampled the paper's ratios (any width)."""
    paper = space.default_values()
    return all(math.isclose(row["values"].get(name, math.nan), value, abs_tol=1e-9)
               for name, value in paper.items() if name != "width")


def paper_mflops(cost_model, width):
    """MFLOPs of the paper's Table 1 network (`PAPER_BLOCKS`) at `width`."""
    return cost_model.cost(PAPER_BLOCKS, width)[0] / 1e6


def trials_figure(rows, *, paper_trials=(), paper_line=None, budget_mflops=None, title=""):
    """The trials chart as a `matplotlib.figure.Figure`.

    Args:
        rows: `tuner.folder.trial_rows` rows (best first).
        paper_trials: Ids of the trials that sampled the paper's ratios.
        paper_line: `(width, MFLOPs)` of the paper's Table 1 network, or None.
        budget_mflops: The search's MFLOPs budget, or None.
        title: The picture's title.
    """
    scored = [r for r in rows if r["score"] is not None]
    figure = new_figure(TRIALS_SIZE)
    axes = figure.subplots()
    if scored:
        x = [r["mflops"] for r in scored]
        y = [r["score"] for r in scored]
        points = axes.scatter(x, y, c=[r["width"] for r in scored], cmap="viridis", s=50,
                              zorder=3, label="trial")
        figure.colorbar(points, ax=axes, label="width")
        for r in scored:
            axes.annotate(r["trial_id"], (r["mflops"], r["score"]), textcoords="offset points",
                          xytext=(6, 4), fontsize="small")
        best = scored[0]
        axes.scatter([best["mflops"]], [best["score"]], s=220, facecolors="none",
                     edgecolors="tab:red", linewidths=2, zorder=4,
                     label=f"best: trial {best['trial_id']}")
        paper = [r for r in scored if r["trial_id"] in set(paper_trials)]
        if paper:
            axes.scatter([r["mflops"] for r in paper], [r["score"] for r in paper], marker="*",
                         s=320, facecolors="none", edgecolors="black", linewidths=1.5, zorder=5,
                         label="the paper's ratios (Table 1, on the grid)")
    if paper_line is not None:
        width, mflops = paper_line
        axes.axvline(mflops, color="black", linestyle=":", linewidth=1.5,
                     label=f"paper's Table 1 network at width {width:g} ({mflops:.1f} MFLOPs)")
    if budget_mflops is not None:
        axes.axvline(budget_mflops, color="tab:red", linestyle="--", linewidth=1,
                     label=f"budget {budget_mflops:g} MFLOPs")
    unscored = len(rows) - len(scored)
    axes.set_xlabel("MFLOPs (multiply-adds of the deployed main-head network)")
    axes.set_ylabel("score: held-out val_main_accuracy")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small", loc="best")
    axes.set_title(f"{title}{': ' if title else ''}{len(scored)} scored trial(s)"
                   + (f", {unscored} without a score" if unscored else ""))
    return figure


def write_trials_chart(directory, rows, hypermodel, log=None):
    """Draws `rows` of a search into `directory/trials.png`; a failure is logged, not raised.

    Args:
        directory: The search folder (`pathlib.Path`).
        rows: Its `tuner.folder.trial_rows`.
        hypermodel: The search's `tuner.hypermodel.HyperGoogLeNet` (space, cost model, budget).
        log: Called with the one line of a failure (default: stderr).

    Returns:
        Whether the picture was written.
    """
    def draw():
        scored = [r for r in rows if r["score"] is not None]
        line = None
        if scored:
            width = scored[0]["width"]
            line = (width, paper_mflops(hypermodel.cost_model, width))
        return trials_figure(
            rows, paper_trials=[r["trial_id"] for r in rows if is_paper_trial(r, hypermodel.space)],
            paper_line=line, budget_mflops=hypermodel.budget.max_mflops,
            title=f"search {directory.name}")

    return try_write_png(directory / TRIALS_CHART, draw, "the trials chart", log=log)
