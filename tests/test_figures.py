"""The pictures: a run's curves.png, a search's trials.png, an export's chart.

Drawn from data written here (history rows, trial rows, the export report of
benchmarks/results): each PNG must be a valid picture of the stated pixel size,
plot exactly the data it was given, be rewritten atomically (an error while
drawing keeps the previous file, no temporary file is left), and never stop
the run that draws it. End-to-end runs check that the real commands write
them (tests/test_training_run.py, tests/test_tuner.py, tests/test_export*.py).
"""

import csv
import io
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from keras_googlenet._internal import figures
from keras_googlenet.architecture import HEADS
from keras_googlenet.export.chart import CHART_SIZE, report_figure, write_report_chart
from keras_googlenet._internal.fileio import TMP_PREFIX
from training import curves
from training.callbacks import PlotCurves
from training.run import ELAPSED_COLUMN, elapsed_seconds, read_history, trim_history
from tuner.chart import TRIALS_SIZE, is_paper_trial, paper_mflops, trials_figure
from tuner.chart import write_trials_chart
from tuner.cost import Budget, CostModel
from tuner.space import SearchSpace

REPO_REPORT = "benchmarks/results/export_report_cifar10_w05.json"


def _png(path):
    """(width, height) of a PNG file, after checking it is one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def _no_temporaries(folder):
    return not [p.name for p in folder.iterdir() if p.name.startswith(TMP_PREFIX)]


# ---- keras_googlenet._internal.figures ----------------------------------------------------


def test_a_figure_is_a_png_of_its_stated_pixel_size(tmp_path):
    def draw():
        figure = figures.new_figure((321, 123))
        figure.subplots().plot([0, 1], [1, 0])
        return figure

    figures.write_png(tmp_path / "a.png", draw)
    assert _png(tmp_path / "a.png") == (321, 123)


def test_an_error_while_drawing_keeps_the_previous_file(tmp_path):
    path = tmp_path / "a.png"
    figures.write_png(path, lambda: figures.new_figure((50, 40)))
    before = path.read_bytes()

    def broken():
        figure = figures.new_figure((50, 40))
        figure.subplots().plot([1, 2], [1, 2, 3])  # x and y differ in length
        return figure

    with pytest.raises(ValueError):
        figures.write_png(path, broken)
    assert path.read_bytes() == before and _no_temporaries(tmp_path)
    lines = []
    assert figures.try_write_png(path, broken, "the test picture", log=lines.append) is False
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("notice: the test picture") and "ValueError" in lines[0]
    assert path.read_bytes() == before and _no_temporaries(tmp_path)


def test_drawing_leaves_the_users_matplotlib_backend_and_pyplot_alone(repo, tmp_path):
    code = (
        "import sys, matplotlib; matplotlib.use('svg'); "
        "from keras_googlenet._internal import figures; "
        f"figures.write_png({str(tmp_path / 'a.png')!r}, lambda: figures.new_figure((40, 30))); "
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=repo,
                         env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["svg", "False"]
    assert _png(tmp_path / "a.png") == (40, 30)


# ---- training.curves: curves.png --------------------------------------------------


def _rows(epochs, start=0, elapsed=True):
    """History rows as Keras's CSVLogger writes them (strings; sorted columns after epoch)."""
    rows = []
    for e in range(start, start + epochs):
        row = {"epoch": str(e)}
        values = {"learning_rate": 0.1 / (e + 1), "epoch_time_s": 2.0,
                  "images_per_second": 100.0, "loss": 3.0 - 0.1 * e}
        if elapsed:
            values[ELAPSED_COLUMN] = 5.0 + 2.5 * e
        for head in HEADS:
            for prefix in ("", "val_"):
                values[f"{prefix}{head}_loss"] = 2.0 - 0.1 * e
                values[f"{prefix}{head}_accuracy"] = 0.1 + 0.05 * e
        for key in sorted(values):
            row[key] = repr(values[key])
        rows.append(row)
    return rows


def _write_history(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_curve_series_has_one_point_per_history_row():
    rows = _rows(5)
    s = curves.curve_series(rows)
    assert s["heads"] == list(HEADS)
    assert s["epoch"] == [1, 2, 3, 4, 5]  # counted from 1, like the console
    assert s["elapsed_s"] == [5.0, 7.5, 10.0, 12.5, 15.0]
    assert s["learning_rate"] == pytest.approx([0.1 / (e + 1) for e in range(5)])
    for head in HEADS:
        assert s[f"val_{head}_accuracy"] == pytest.approx([0.1 + 0.05 * e for e in range(5)])
    figure = curves.curves_figure(rows)
    lines = [line for axes in figure.axes for line in axes.get_lines()]
    # 4 lines per head in the loss and accuracy panels, 1 per head against time, the rate.
    assert len(lines) == 5 * len(HEADS) + 1
    assert all(len(line.get_xdata()) == 5 for line in lines)
    timed = figure.axes[3]
    assert [list(line.get_xdata()) for line in timed.get_lines()] == [s["elapsed_s"]] * 3


def test_elapsed_time_of_an_old_history_is_the_sum_of_its_epoch_times():
    old = _rows(3, elapsed=False)
    assert elapsed_seconds(old) == [2.0, 4.0, 6.0]
    new = _rows(2, start=3)  # a resumed run's later rows have the column
    assert elapsed_seconds(old + new) == [2.0, 4.0, 6.0, 12.5, 15.0]
    assert curves.curve_series([])["epoch"] == []


def test_plot_curves_redraws_after_every_epoch_from_the_whole_history(tmp_path):
    callback = PlotCurves(tmp_path)
    png = tmp_path / curves.CURVES_FILE
    _write_history(tmp_path / "history.csv", _rows(1))
    callback.on_epoch_end(0)
    assert _png(png) == curves.CURVES_SIZE
    first = png.read_bytes()
    _write_history(tmp_path / "history.csv", _rows(2))
    callback.on_epoch_end(1)
    assert png.read_bytes() != first and _png(png) == curves.CURVES_SIZE
    assert callback.failures == 0 and _no_temporaries(tmp_path)


def test_a_curves_failure_is_logged_once_and_keeps_the_previous_picture(tmp_path, monkeypatch):
    lines = []
    callback = PlotCurves(tmp_path, log=lines.append)
    _write_history(tmp_path / "history.csv", _rows(2))
    callback.on_epoch_end(1)
    png = tmp_path / curves.CURVES_FILE
    before = png.read_bytes()

    def broken(rows, title=""):
        raise RuntimeError("no fonts\nat all")

    monkeypatch.setattr(curves, "curves_figure", broken)
    callback.on_epoch_end(2)
    callback.on_epoch_end(3)  # does not raise either, and is not logged again
    assert callback.failures == 2 and len(lines) == 1
    assert "RuntimeError: no fonts at all" in lines[0] and "training goes on" in lines[0]
    assert png.read_bytes() == before and _no_temporaries(tmp_path)
    # A history that cannot be read is a failure like any other.
    (tmp_path / "history.csv").write_text("epoch,loss\n0,x\n")
    monkeypatch.undo()
    callback.on_epoch_end(4)
    assert callback.failures == 3 and png.read_bytes() == before


def test_an_old_history_gets_the_elapsed_column_on_resume_and_keras_appends_to_it(tmp_path):
    import keras

    path = tmp_path / "history.csv"
    _write_history(path, _rows(3, elapsed=False))
    kept = trim_history(path, 2)  # the backup covers 2 epochs: the third is redone
    assert [r[ELAPSED_COLUMN] for r in kept] == ["2.0", "4.0"]
    header = path.read_text().splitlines()[0].split(",")
    assert header[0] == "epoch" and header[1:] == sorted(header[1:])  # CSVLogger's order
    logger = keras.callbacks.CSVLogger(str(path), append=True)
    logger.on_train_begin()
    logs = {k: float(v) for k, v in _rows(1, start=2)[0].items() if k != "epoch"}
    logger.on_epoch_end(2, logs)
    logger.on_train_end()
    rows = trim_history(path, 3)  # every field of every row is a number again
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert elapsed_seconds(read_history(path)) == [2.0, 4.0, 10.0]


# ---- tuner.chart: trials.png --------------------------------------------------------


def _search(tmp_path):
    """A fake finished search: trial rows (best first) and what write_trials_chart needs."""
    space = SearchSpace(min_width=0.0625, max_width=0.125, width_step=0.0625)
    cost = CostModel("cifar", 32, 10, True)
    hypermodel = SimpleNamespace(space=space, cost_model=cost, budget=Budget(cost, 12.0))
    rng = np.random.default_rng(0)
    paper = space.default_values()
    other = {name: float(rng.choice(space.grid(name))) for name in space.ranges()}
    rows = []
    for trial_id, values, score in (("1", other, 0.4), ("0", paper, 0.3), ("2", other, None)):
        values = {**values, "width": 0.0625}
        mflops, params = hypermodel.budget.measure(values)
        rows.append({"trial_id": trial_id, "status": "FAILED" if score is None else "COMPLETED",
                     "score": score, "epochs": 1, "mflops": round(mflops, 3), "params": params,
                     "width": 0.0625, "values": values})
    directory = tmp_path / "search"
    directory.mkdir()
    return directory, rows, hypermodel


def test_trials_chart_plots_every_scored_trial_and_marks_the_papers(tmp_path):
    directory, rows, hypermodel = _search(tmp_path)
    space = hypermodel.space
    assert [is_paper_trial(r, space) for r in rows] == [False, True, False]
    line = (0.0625, paper_mflops(hypermodel.cost_model, 0.0625))
    # The paper's own table costs what the paper-like ratios on the grid cost, roughly.
    assert line[1] == pytest.approx(rows[1]["mflops"], rel=0.15)
    figure = trials_figure(rows, paper_trials=["0"], paper_line=line, budget_mflops=12.0)
    axes = figure.axes[0]
    points, best, star = axes.collections[:3]
    assert points.get_offsets().tolist() == [[r["mflops"], r["score"]] for r in rows[:2]]
    assert best.get_offsets().tolist() == [[rows[0]["mflops"], 0.4]]
    assert star.get_offsets().tolist() == [[rows[1]["mflops"], 0.3]]
    verticals = sorted(ln.get_xdata()[0] for ln in axes.get_lines())
    assert verticals == sorted([line[1], 12.0])
    assert "2 scored trial(s), 1 without a score" in axes.get_title()

    assert write_trials_chart(directory, rows, hypermodel) is True
    assert _png(directory / "trials.png") == TRIALS_SIZE and _no_temporaries(directory)


def test_trials_chart_without_a_scored_trial_still_draws(tmp_path):
    directory, rows, hypermodel = _search(tmp_path)
    lines = []
    assert write_trials_chart(directory, rows[2:], hypermodel, log=lines.append) is True
    assert not lines and _png(directory / "trials.png") == TRIALS_SIZE


# ---- keras_googlenet.export.chart: export_report.png -----------------------------


@pytest.fixture
def report(repo):
    return json.loads((repo / REPO_REPORT).read_text())


def test_export_chart_shows_every_tflite_variant(report, tmp_path):
    figure = report_figure(report)
    quality, size, latency = figure.axes
    tflite = [a for a in report["artifacts"] if a["format"] != "saved_model"]
    ticks = sorted(zip(quality.get_yticks(), (t.get_text() for t in quality.get_yticklabels())))
    assert [name for _, name in ticks][::-1] == [a["format"] for a in tflite]  # first on top
    assert [p.get_width() for p in size.patches] == pytest.approx(
        [a["size_bytes"] / 1e6 for a in tflite])
    assert [p.get_width() for p in latency.patches] == pytest.approx(
        [a["latency_ms"] for a in tflite])
    assert quality.collections[0].get_offsets()[:, 0].tolist() == pytest.approx(
        [100 * a["accuracy"] for a in tflite])
    assert quality.get_lines()[0].get_xdata()[0] == pytest.approx(100 * report["keras"]["accuracy"])
    assert write_report_chart(tmp_path, report) is True
    assert _png(tmp_path / "export_report.png") == CHART_SIZE


def test_export_chart_of_an_unlabelled_sample_shows_agreement(report, tmp_path):
    report["sample"]["labelled"] = False
    for a in report["artifacts"]:
        a.pop("accuracy")
    figure = report_figure(report)
    assert "agreement" in figure.axes[0].get_xlabel()
    assert figure.axes[0].collections[0].get_offsets()[:, 0].tolist() == pytest.approx(
        [100 * a["top1_agreement"] for a in report["artifacts"] if a["format"] != "saved_model"])
    assert write_report_chart(tmp_path, report) is True


def test_an_export_without_tflite_files_has_no_chart(report, tmp_path):
    report["artifacts"] = [a for a in report["artifacts"] if a["format"] == "saved_model"]
    with pytest.raises(ValueError, match="no .tflite"):
        report_figure(report)
    assert write_report_chart(tmp_path, report) is False
    assert not list(tmp_path.iterdir())


def test_the_drawing_tool_redraws_saved_results(repo, tmp_path):
    env = {"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"}

    def tool(*args):
        return subprocess.run([sys.executable, "tools/draw_figures.py", *args], cwd=repo,
                              capture_output=True, text=True, timeout=120, env=env)

    _write_history(tmp_path / "history.csv", _rows(3))
    for picture, source, size in (("curves", str(tmp_path), curves.CURVES_SIZE),
                                  ("export", REPO_REPORT, CHART_SIZE),
                                  ("trials", "benchmarks/results/tuner_search.json", TRIALS_SIZE)):
        out = tmp_path / f"{picture}.png"
        run = tool(picture, source, "--output", str(out))
        assert run.returncode == 0, run.stderr[-2000:]
        assert _png(out) == size
    bad = tool("export", str(tmp_path / "none.json"), "--output", str(tmp_path / "x.png"))
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
    assert not (tmp_path / "x.png").exists()
