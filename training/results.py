"""`results.json`: what a finished run reports, and how.

Written last, by `write_results`: its presence marks a finished run
(`training.run.run_state`). Per head, the final weights' accuracy and loss on the
held-out split (also with flip TTA under `--tta-flip`); the end-of-run evaluation
(`training.evaluate`); the best epoch; wall and training time and training images/s;
the training phases; where the models and the SavedModel are; and `notes`, which
say what each figure means.
"""

import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from keras_googlenet.architecture import HEADS
from keras_googlenet._internal.fileio import atomic_write_json
from training.run import read_history


def run_results(config, data, final, tta, report, phases, *, started, replicas, resumed_from,
                saved_model):
    """The results of a finished run, as `results.json` holds them.

    Args:
        config: The run's resolved `TrainConfig`.
        data: Its `training.data.build_datasets` (sizes and sources of the splits).
        final: `model.evaluate`'s dict of the final weights on the held-out split.
        tta: The flip-TTA accuracy of each head (`--tta-flip`), or None.
        report: `training.evaluate.evaluate_finished_training`'s report, or None.
        phases: The training phases' records (`training.trainer`).
        started: This session's start (`time.time()`).
        replicas: The number of devices it trained on.
        resumed_from: The epoch it resumed from (0: it started from scratch).
        saved_model: The exported SavedModel's path, or None.

    Returns:
        The results dict; the best epoch and the training time are read from the
        run's `history.csv`.
    """
    import keras

    from training.evaluation import selection_metric

    run_dir = Path(config.run_dir)
    history = read_history(run_dir / "history.csv")
    metric = selection_metric(config)
    best = max(history, key=lambda r: float(r[metric]))
    heads = [h for h in HEADS if f"{h}_accuracy" in final]
    return {
        "name": config.name,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backend": keras.backend.backend(),
        "devices": replicas,
        "epochs": config.epochs,
        "resumed_from_epoch": resumed_from,
        "phases": phases,
        "num_train": data.num_train,
        "num_val": data.num_val,
        "val_source": data.val_source,
        "skipped_files": len(data.skipped_files),
        "final_weights": "ema" if config.ema else "last epoch",
        "val_accuracy": {h: _f32(final[f"{h}_accuracy"]) for h in heads},
        **({"val_accuracy_tta": {h: _f32(tta[h]) for h in heads}} if tta else {}),
        **({"evaluation": report} if report else {}),
        "val_loss": {h: _f32(final[f"{h}_loss"]) for h in heads} | {"total": _f32(final["loss"])},
        "best_epoch": int(best["epoch"]) + 1,
        "best_metric": metric,
        "best_val_main_accuracy": _f32(best[metric]),
        "wall_time_s": round(time.time() - started, 2),
        "train_time_s": round(sum(float(r["epoch_time_s"]) for r in history), 2),
        # Median over epochs: robust to the first epoch's compilation time.
        "train_images_per_second": round(
            statistics.median(float(r["images_per_second"]) for r in history), 1
        ),
        "notes": {"val_accuracy": "the final weights (" + ("EMA" if config.ema else "last epoch")
                  + ") on the plain held-out images, no test-time augmentation"
                  + ("; val_accuracy_tta: the mean of the probabilities on each image and its "
                     "mirror (--tta-flip)" if tta else ""),
                  "best_val_main_accuracy": f"{metric} of the best epoch (raw weights"
                  + (", flip TTA" if config.tta_flip else "") + ")",
                  "train_images_per_second": "median of the epochs' training images/s "
                  "(robust to the first epoch's compilation)",
                  "best_epoch": "counted from 1, like the console (history.csv's epoch "
                  "column counts from 0, as Keras's CSVLogger writes it)",
                  "phases": "epochs counted from 1, both included; each phase has its own "
                  "optimizer and learning-rate schedule (see --freeze-epochs)"},
        "model": str(run_dir / "model.keras"),
        "best_model": str(run_dir / "best.keras"),
        "saved_model": saved_model,
    }


def write_results(run_dir, results):
    """Writes `results.json` into `run_dir`, atomically (the run is then finished)."""
    atomic_write_json(Path(run_dir) / "results.json", results)


def _f32(value):
    """A float32 metric as its shortest decimal (0.344, not 0.3440000116825104)."""
    return float(f"{float(value):.7g}")
