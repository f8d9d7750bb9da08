"""The run folder `runs/<name>/`: whether a run may start, and its history.

`training.cifar.train` asks `run_state` before touching anything, then
`start_run_folder` writes the run's settings; `trim_history` drops the
`history.csv` rows of epochs a resumed run redoes. Every write goes through
`keras_googlenet.fileio`.
"""

import csv
import os
import shutil
from pathlib import Path

from keras_googlenet.fileio import atomic_path, atomic_write_text, remove_stale_temporaries
from training.config import TrainConfig


class RunError(ValueError):
    """The run folder is in a state that forbids this run; one line for the user."""


def run_state(config):
    """`"new"`, `"resume"` or `"overwrite"`; raises `RunError` if the run must not start.

    A finished run (one with `results.json`) and an unfinished run started with
    other settings (`TrainConfig.resume_differences`) are only started over
    with `config.overwrite`; a new run never replaces an existing export.
    """
    run_dir = Path(config.run_dir)
    hint = "pass --overwrite to start it over, or pick another --name"
    if not run_dir.exists() or not any(run_dir.iterdir()):
        if config.export and os.path.exists(config.export_path) and not config.overwrite:
            raise RunError(f"{config.export_path} already exists; {hint}")
        return "new"
    if (run_dir / "results.json").exists():
        if config.overwrite:
            return "overwrite"
        raise RunError(f"run {config.name!r} already finished ({run_dir / 'results.json'}); {hint}")
    try:
        saved = TrainConfig.load(run_dir / "config.json")
    except (OSError, ValueError, TypeError) as e:
        if config.overwrite:
            return "overwrite"
        raise RunError(f"{run_dir} is not a readable run folder ({e}); {hint}") from e
    changed = config.resume_differences(saved)
    if changed:
        if config.overwrite:
            return "overwrite"
        details = ", ".join(
            f"{k}: {getattr(saved, k)!r} -> {getattr(config, k)!r}" for k in changed
        )
        raise RunError(
            f"unfinished run {config.name!r} was started with other settings ({details}); "
            f"re-run with the same flags to resume it, or {hint}"
        )
    return "resume"


def start_run_folder(config, state, class_names):
    """Creates (or clears, for `"overwrite"`) the run folder and writes
    `config.json` and `labels.txt`; returns the folder as a `Path`."""
    run_dir = Path(config.run_dir)
    if state == "overwrite":
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(run_dir)  # left by a killed save
    config.save(run_dir / "config.json")
    atomic_write_text(run_dir / "labels.txt", "".join(f"{c}\n" for c in class_names))
    return run_dir


def read_history(path):
    """The rows of a `history.csv` (Keras's CSVLogger) as dicts; `[]` without one."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def trim_history(path, epochs_done):
    """Drops CSV rows of epochs the backup does not cover (they will be redone).

    Returns:
        The rows kept.
    """
    path = Path(path)
    rows = read_history(path)
    keep = [r for r in rows if int(r["epoch"]) < epochs_done]
    if len(keep) != len(rows):
        if keep:
            with atomic_path(path) as tmp:
                with open(tmp, "w", newline="", encoding="utf-8") as f:
                    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(keep)
        else:
            path.unlink()
    return keep
