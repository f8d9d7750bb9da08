"""Train, evaluate and export from Python: the job `python -m training.cifar` runs.

    from training import TrainConfig, default_model, train

    run = train(TrainConfig(data_dir="flowers/", name="flowers", epochs=10,
                            model=default_model(width=0.5), image_size=64))
    run.results["val_accuracy"]["main"]     # what results.json holds
    run.history["val_main_accuracy"]        # history.csv, one list per column
    run.model                               # the trained keras.Model (model.keras)
    report = run.evaluate()                 # top-1/top-5, per class, confusion.png
    run.export("flowers", formats=["int8", "float16"])   # saved_models/flowers/

`train` is the command line's own code path (`training.cifar.train`): the same
run folder, resume, TensorBoard logs, curves.png, results.json and checks, so a
run started from a shell can be resumed, evaluated or exported from Python and
back (`load_run(run_dir)`). Errors are the CLI's, as exceptions
(`ConfigError`, `DataError`, `RunError`, ...); the CLI prints them as one line.
"""

import dataclasses
import functools
import os

from keras_googlenet._internal.fileio import parse_json
from training.config import TrainConfig
from training.run import read_history


@dataclasses.dataclass(frozen=True)
class Run:
    """A finished training run: its folder, its configuration and its results.

    Attributes:
        run_dir: The run folder (`runs/<name>`).
        config: The run's `TrainConfig` (as recorded in `config.json`).
        results: The run's `results.json`, a dict.
    """

    run_dir: str
    config: TrainConfig
    results: dict

    @functools.cached_property
    def model(self):
        """The trained `keras.Model` (the run's `model.keras`: every head)."""
        import keras

        import keras_googlenet  # noqa: F401  (registers the package's layers)

        return keras.saving.load_model(os.path.join(self.run_dir, "model.keras"))

    @property
    def history(self):
        """`history.csv` as `{column: [value per epoch]}` (numbers as floats)."""
        rows = read_history(os.path.join(self.run_dir, "history.csv"))
        return {key: [_number(row[key]) for row in rows] for key in (rows[0] if rows else {})}

    def evaluate(self, data_dir=None, *, output_dir=None, tta_flip=None, batch_size=64):
        """Top-1/top-5, per-class metrics and a confusion matrix of the main head.

        Args:
            data_dir: A folder (or archive) of `<class>/<image>` to evaluate on;
                None: the run's own held-out split.
            output_dir: Where `evaluation.json` and `confusion.png` go; None: the
                run folder for its own split, else `<run>/evaluation-<folder>/`.
            tta_flip: Average with the mirrored images; None: as the run did.
            batch_size: Images per prediction batch.

        Returns:
            The evaluation report (also written to `evaluation.json`), a dict.
        """
        from training.evaluate import evaluate_path

        report, _ = evaluate_path(self.run_dir, data_dir=data_dir, output_dir=output_dir,
                                  tta_flip=tta_flip, batch_size=batch_size)
        return report

    def export(self, name, **options):
        """Exports the run to `export_dir/name/` (SavedModel, TFLite files, labels,
        report): `training.export.export_run`'s options (`formats=["int8"]`,
        `export_dir=`, `head=`, `overwrite=`, `calibration_data=`, ...).

        Returns:
            The export report (also written to `export_report.json`), a dict.
        """
        from training.export import export_run

        return export_run(self.run_dir, name, **options)


def train(config, callbacks=()):
    """Trains one run (or resumes it) as `python -m training.cifar` does.

    Args:
        config: A `TrainConfig`; its fields are the command line's flags
            (`--data-dir` is `data_dir`, ...).
        callbacks: More `keras.callbacks.Callback`s for `model.fit`.

    Returns:
        The finished `Run`.
    """
    from training.cifar import train as train_run

    results = train_run(config, callbacks)
    return load_run(config.run_dir, results=results)


def load_run(run_dir, *, results=None):
    """The `Run` of a finished run folder (one with `results.json`).

    Raises:
        ValueError: If `run_dir` holds no finished run.
    """
    run_dir = os.fspath(run_dir)
    path = os.path.join(run_dir, "results.json")
    if results is None:
        if not os.path.isfile(path):
            raise ValueError(f"{run_dir} is not a finished run: it has no results.json. "
                             f"Received: run_dir={run_dir!r}")
        with open(path, encoding="utf-8") as f:
            results = parse_json(f.read())
    return Run(run_dir, TrainConfig.load(os.path.join(run_dir, "config.json")), results)


def _number(text):
    try:
        return float(text)
    except ValueError:
        return text
