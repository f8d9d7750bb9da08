"""A run's `curves.png`: its training curves, drawn from `history.csv`.

Four panels: the loss and the accuracy of every head against the epoch
(training solid, held-out validation dashed), the learning rate at the end of
each epoch, and the held-out accuracy of every head against the run's wall
time (`training.run.elapsed_seconds`). The picture is redrawn from the whole
`history.csv` after every epoch (`training.callbacks.PlotCurves`), so a resumed
run's picture covers every epoch, and written atomically
(`keras_googlenet._internal.figures`). Epochs are counted from 1, like the console
(`history.csv`'s `epoch` column counts from 0, as Keras's CSVLogger writes it).
"""

from keras_googlenet.architecture import HEADS, MAIN_HEAD
from keras_googlenet._internal.figures import new_figure, try_write_png
from training.run import elapsed_seconds, read_history

#: The picture's file name, beside `history.csv` in the run folder.
CURVES_FILE = "curves.png"

#: Its size in pixels (width, height).
CURVES_SIZE = (1200, 800)


def curve_series(rows):
    """The plotted series of `history.csv` rows (as `training.run.read_history` gives them).

    Returns:
        A dict: `epoch` (counted from 1), `learning_rate`, `elapsed_s`, and for
        every head found in the columns (`heads`, in `HEADS` order), `<head>_loss`,
        `<head>_accuracy`, `val_<head>_loss`, `val_<head>_accuracy`; each a list
        with one float per row (NaN where a row lacks the value).
    """
    columns = set(rows[0]) if rows else set()
    heads = [h for h in HEADS if f"{h}_loss" in columns]
    series = {
        "heads": heads,
        "epoch": [int(r["epoch"]) + 1 for r in rows],
        "learning_rate": [_number(r.get("learning_rate")) for r in rows],
        "elapsed_s": elapsed_seconds(rows) if rows else [],
    }
    for head in heads:
        for key in (f"{head}_loss", f"{head}_accuracy", f"val_{head}_loss", f"val_{head}_accuracy"):
            series[key] = [_number(r.get(key)) for r in rows]
    return series


def _time_unit(seconds):
    """`(unit, seconds per unit)` for a time axis that ends at `seconds`."""
    if seconds >= 3 * 3600:
        return "h", 3600.0
    if seconds >= 3 * 60:
        return "min", 60.0
    return "s", 1.0


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):  # missing, or CSVLogger's "NA"
        return float("nan")


def curves_figure(rows, title=""):
    """The curves of `history.csv` rows as a `matplotlib.figure.Figure`."""
    s = curve_series(rows)
    figure = new_figure(CURVES_SIZE)
    (loss, accuracy), (rate, timed) = figure.subplots(2, 2)
    colours = dict(zip(HEADS, ("tab:orange", "tab:green", "tab:blue")))
    unit, scale = _time_unit(max(s["elapsed_s"], default=0.0))
    marker = "o" if len(rows) <= 30 else None  # a one-epoch run still shows its points
    for head in s["heads"]:
        width = 2.0 if head == MAIN_HEAD else 1.2
        style = {"color": colours[head], "linewidth": width, "marker": marker, "markersize": 3}
        for axes, metric in ((loss, "loss"), (accuracy, "accuracy")):
            axes.plot(s["epoch"], s[f"{head}_{metric}"], label=f"{head} train", **style)
            axes.plot(s["epoch"], s[f"val_{head}_{metric}"], linestyle="--",
                      label=f"{head} validation", **style)
        timed.plot([t / scale for t in s["elapsed_s"]], s[f"val_{head}_accuracy"],
                   label=f"{head} validation", **style)
    rate.plot(s["epoch"], s["learning_rate"], color="black", marker=marker, markersize=3)
    for axes, what in ((loss, "loss"), (accuracy, "accuracy"), (rate, "learning rate")):
        axes.set_xlabel("epoch")
        axes.set_ylabel(what)
    loss.set_title("loss per head (training, held-out validation)")
    accuracy.set_title("accuracy per head")
    rate.set_title("learning rate (end of epoch)")
    timed.set_title("held-out accuracy against the run's wall time")
    timed.set_xlabel(f"wall time ({unit})")
    timed.set_ylabel("validation accuracy")
    for axes in (loss, accuracy, rate, timed):
        axes.grid(alpha=0.3)
    for axes in (loss, accuracy, timed):
        if s["heads"]:
            axes.legend(fontsize="small", ncols=2 if axes is not timed else 1)
    for axes in (loss, accuracy, rate):  # whole epochs only
        axes.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(title or f"{len(rows)} epoch(s)")
    return figure


def write_curves(run_dir, log=None):
    """Draws `run_dir/history.csv` into `run_dir/curves.png` (atomically); never raises.

    Args:
        run_dir: The run folder (`pathlib.Path`).
        log: Called with the one line of a failure (a history that cannot be
            read, matplotlib missing, ...; default: stderr). The previous
            picture is then kept.

    Returns:
        Whether the picture was written.
    """
    def draw():
        rows = read_history(run_dir / "history.csv")
        return curves_figure(rows, f"run {run_dir.name}: {len(rows)} epoch(s)")

    return try_write_png(run_dir / CURVES_FILE, draw, "the training curves", log=log)
