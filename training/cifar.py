"""Train GoogLeNet on CIFAR-10 (or any image folder) end to end.

    python -m training.cifar --name my-run
    python -m training.cifar --data-dir ../shared/data/cifar10/train.tar.xz --epochs 30
    python -m training.cifar --help

A run lives in `runs/<name>/`:

- `config.json`: the resolved `TrainConfig`; `labels.txt`: class names in output order;
- `model_config.json`: the network (`keras_googlenet.GoogLeNetConfig`), so that
  `keras_googlenet.load_model_folder("runs/<name>")` rebuilds the trained model;
- `history.csv` and `logs/` (TensorBoard): per-epoch loss and accuracy of every
  head, learning rate, images/s, the run's wall time (`elapsed_s`), for
  training and validation (`val_*_accuracy`: plain images, raw weights;
  `*_tta`: flip TTA with `--tta-flip`; `*_ema`: EMA weights with `--ema`; see
  `training.evaluation`);
- `curves.png`: those curves as a picture, redrawn after every epoch
  (`training.curves`);
- `best.keras`: the model of the best epoch by `val_main_accuracy` (`..._tta`
  with `--tta-flip`);
- `model.keras`: the final three-head model (EMA weights with `--ema`);
- `evaluation.json`, `confusion.png`: the main head's top-1/top-5, per-class
  figures and confusion matrix on the held-out split (`training.evaluate`);
- `results.json`: final per-head accuracy on the held-out split (also with flip
  TTA under `--tta-flip`), wall time,
  training images/s, the training phases (written last: its presence
  marks a finished run);
- `backup/`: the state a killed run resumes from (removed when the run finishes).

and the main head is exported as a SavedModel to `saved_models/<name>/`.
"""

import sys

from training.cli import UsageError, one_line
from training.config import ConfigError
from training.flags import build_parser, config_from_args  # noqa: F401 (the CLI's API)
from training.run import RunError
from training.trainer import ExportFailed, train  # noqa: F401 (training.cifar.train: the API)


def main(argv=None):
    """Command-line entry point; returns the process exit status."""
    from keras_googlenet._internal.logs import import_backend

    try:
        config = config_from_args(argv)
    except UsageError as e:
        print(f"error: {e} (see --help)", file=sys.stderr)
        return 2
    import_backend(verbose=config.framework_logs)  # before anything imports Keras
    from training.callbacks import TrainingDiverged
    from training.data import DataError

    try:
        train(config)
    except (ConfigError, DataError, RunError, TrainingDiverged, ExportFailed) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)  # always one line
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last completed "
              "epoch", file=sys.stderr)
        return 130
    except OSError as e:  # a folder that became unwritable, and the like
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
