"""The export report's picture, `export_report.png`: the TFLite variants side by side.

Three small panels, one row per `.tflite` variant of the report
(`export_report.json`): held-out accuracy (with the Keras model's as a line;
top-1 agreement with Keras when the sample has no labels, and the agreement
written beside every accuracy), file size, and batch-1 LiteRT latency. Sizes
and latencies are bars from zero (their ratios matter); accuracies are points
on a zoomed axis (their differences are tenths of a point).

`keras_googlenet.export.export` writes it beside the report; for a report
written earlier, `python tools/draw_figures.py export REPORT.json --output X.png` draws it.
"""

import os

from keras_googlenet._internal.figures import new_figure, try_write_png

#: The picture's file name, beside `export_report.json`.
CHART_FILE = "export_report.png"

#: Its size in pixels (width, height).
CHART_SIZE = (1050, 300)


def tflite_rows(report):
    """The report's `.tflite` artifacts (not the SavedModel), in the report's order."""
    return [a for a in report["artifacts"] if a["format"] != "saved_model"]


def report_figure(report):
    """The chart of an export report (a dict as `export` returns) as a `Figure`.

    Raises:
        ValueError: If the report has no TFLite artifact.
    """
    rows = tflite_rows(report)
    if not rows:
        raise ValueError("the report has no .tflite artifact to chart")
    labelled = report["sample"]["labelled"]
    names = [a["format"] for a in rows]
    where = list(range(len(rows)))[::-1]  # the report's first row on top
    figure = new_figure(CHART_SIZE)
    quality, size, latency = figure.subplots(1, 3, sharey=True)

    key = "accuracy" if labelled else "top1_agreement"
    values = [100 * a[key] for a in rows]
    quality.scatter(values, where, color="tab:blue", zorder=3)
    for value, y, a in zip(values, where, rows):
        text = f"{value:.2f}%" + (f" (agrees {100 * a['top1_agreement']:.1f}%)" if labelled else "")
        quality.annotate(text, (value, y), textcoords="offset points", xytext=(0, 7),
                         ha="center", fontsize="small")
    low, high = min(values), max(values)
    if labelled:
        reference = 100 * report["keras"]["accuracy"]
        quality.axvline(reference, color="black", linestyle=":",
                        label=f"Keras {reference:.2f}%")
        quality.legend(fontsize="small", loc="lower left")
        low, high = min(low, reference), max(high, reference)
    pad = max(1.0, (high - low) * 0.6)
    quality.set_xlim(low - pad, high + pad)
    quality.set_ylim(-0.6, len(rows) - 0.2)
    quality.set_xlabel("held-out accuracy (%)" if labelled else "top-1 agreement with Keras (%)")

    megabytes = [a["size_bytes"] / 1e6 for a in rows]
    size.barh(where, megabytes, color="tab:green")
    size.bar_label(size.containers[0], labels=[f"{m:.2f} MB" for m in megabytes],
                   fontsize="small", padding=2)
    size.set_xlim(0, max(megabytes) * 1.35)
    size.set_xlabel("file size (MB)")

    ms = [a["latency_ms"] for a in rows]
    latency.barh(where, ms, color="tab:orange")
    latency.bar_label(latency.containers[0], labels=[f"{m:.2f} ms" for m in ms],
                      fontsize="small", padding=2)
    latency.set_xlim(0, max(ms) * 1.35)
    lat = report["latency"]
    latency.set_xlabel(f"latency (ms; batch {lat['batch']}, {lat['threads']} thread(s))")

    quality.set_yticks(where, names)
    for axes in (quality, size, latency):
        axes.grid(axis="x", alpha=0.3)
    sample = report["sample"]
    figure.suptitle(f"Export {report['name']!r}: {report['head']} head, {report['classes']} "
                    f"classes; {sample['images']} {'held-out ' if labelled else ''}images",
                    fontsize="medium")
    return figure


def write_report_chart(directory, report, log=None):
    """Draws `report` into `directory/export_report.png`; a failure is logged, not raised.

    Returns:
        Whether the picture was written (not when the report has no `.tflite` file).
    """
    if not tflite_rows(report):
        return False
    return try_write_png(os.path.join(directory, CHART_FILE), lambda: report_figure(report),
                         "the export chart", log=log)
