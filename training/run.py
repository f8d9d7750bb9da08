"""The run folder `runs/<name>/`: whether a run may start, and its history.

`training.trainer.train` checks the folders it will write (`check_folders`),
takes the run's lock (`run_lock`, so that two processes never train one run),
asks `run_state` before touching anything, then `start_run_folder` writes the
run's settings; `trim_history` drops the `history.csv` rows of epochs a
resumed run redoes. Every write goes through `keras_googlenet._internal.fileio`.
"""

import contextlib
import csv
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from keras_googlenet.config import MODEL_CONFIG_FILE
from keras_googlenet._internal.fileio import (
    TMP_PREFIX,
    atomic_path,
    atomic_write_text,
    remove_stale_temporaries,
)
from training.cli import one_line
from training.config import TrainConfig

#: The `history.csv` column of the run's wall time at the end of each epoch
#: (seconds, `training.callbacks.EpochStats`): from the run's start, summed over
#: the sessions of a resumed run (the time between a kill and the resume is not
#: counted). Histories written before it existed get it on resume
#: (`trim_history`, from `epoch_time_s`: see `elapsed_seconds`).
ELAPSED_COLUMN = "elapsed_s"

#: What to do about a damaged or foreign run folder.
OVERWRITE_HINT = "pass --overwrite to start it over, or pick another --name"


class RunError(ValueError):
    """The run folder is in a state that forbids this run; one line for the user."""


def check_folders(config):
    """Raises `RunError` unless every folder the run writes can be created and written.

    Checks `--runs-dir`, `--export-dir` (with `--export`) and `--cache-dir`
    (when given) before anything is read or written: each must be a folder, or
    not exist yet below a writable folder.
    """
    folders = [("--runs-dir", config.runs_dir)]
    if config.export:
        folders.append(("--export-dir", config.export_dir))
    if config.cache_dir is not None:
        folders.append(("--cache-dir", config.cache_dir))
    for flag, folder in folders:
        path = os.path.abspath(os.path.expanduser(folder))
        while not os.path.lexists(path):  # the nearest existing ancestor
            path = os.path.dirname(path)
        if not os.path.isdir(path):
            raise RunError(f"{flag} {folder}: {path} is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise RunError(f"{flag} {folder}: {path} is not writable")


@contextlib.contextmanager
def run_lock(config):
    """Holds the lock of run `config.name` while the `with` block runs.

    The lock is `fcntl.flock` (exclusive, non-blocking) on `runs/.NAME.lock`,
    a sibling of the run folder (so that `--overwrite` can move the folder
    aside while holding it). The OS releases it when the process ends, however
    it ends, so a killed run never leaves a stale lock.

    Raises:
        RunError: If another process holds the lock.
    """
    os.makedirs(config.runs_dir, exist_ok=True)
    path = os.path.join(config.runs_dir, f".{config.name}.lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            os.close(fd)
            raise RunError(
                f"run folder {config.run_dir}: another process is training it"
                f"{f' (pid {holder})' if holder.isdigit() else ''}; wait for it to end, "
                "or pick another --name"
            ) from None
        try:  # the holder may have removed the file between our open and flock
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.unlink(path)  # while holding it: a waiting opener sees a new file and retries
        os.close(fd)


def run_state(config):
    """`"new"`, `"resume"` or `"overwrite"`; raises `RunError` if the run must not start.

    A finished run (one with `results.json`) and an unfinished run started with
    other settings (`TrainConfig.resume_differences`) are only started over
    with `config.overwrite`; a new run never replaces an existing export.
    """
    run_dir = Path(config.run_dir)
    hint = OVERWRITE_HINT
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
        raise RunError(f"{run_dir} is not a readable run folder: {run_dir / 'config.json'} is "
                       f"missing or damaged ({one_line(e, 120)}); {hint}") from e
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


def write_failed(error, backup):
    """The `RunError` of a run stopped by the `OSError` `error` (a full disk,
    above all), saying what its `backup` (an `AtomicBackupAndRestore`) keeps."""
    where = f" ({error.filename})" if error.filename else ""
    try:
        kept = backup.saved_epoch()
    except RunError:
        kept = 0
    if kept:
        then = (f"the last completed epoch ({kept}) is kept in {backup.backup_dir}: fix the "
                "cause and run the same command again to resume")
    else:
        then = ("no epoch was backed up yet: fix the cause and run the same command again to "
                "start it over")
    return RunError(f"the run stopped: {error.strerror or error}{where}; {then}")


def start_run_folder(config, state, class_names, model_config):
    """Creates the run folder and writes `config.json`, `labels.txt` and
    `model_config.json`; returns the folder as a `Path`.

    For `"overwrite"`, the old run is moved aside (one rename) and deleted only
    once the new folder is written; if writing fails, it is moved back.
    """
    run_dir = Path(config.run_dir)
    for stale in run_dir.parent.glob(f"{TMP_PREFIX}{run_dir.name}-old-*"):
        if run_dir.is_dir():  # left by a killed overwrite, after the new run started
            shutil.rmtree(stale, ignore_errors=True)
    aside = None
    if state == "overwrite" and run_dir.exists():
        aside = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{run_dir.name}-old-", dir=run_dir.parent)
        os.rmdir(aside)
        os.rename(run_dir, aside)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(run_dir)  # left by a killed save
        config.save(run_dir / "config.json")
        atomic_write_text(run_dir / "labels.txt", "".join(f"{c}\n" for c in class_names))
        model_config.save(run_dir / MODEL_CONFIG_FILE)
    except BaseException:
        if aside is not None:
            shutil.rmtree(run_dir, ignore_errors=True)
            os.rename(aside, run_dir)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return run_dir


def read_history(path):
    """The rows of a `history.csv` (Keras's CSVLogger) as dicts; `[]` without one."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def elapsed_seconds(rows):
    """The run's wall time at the end of each history row's epoch, in seconds.

    `ELAPSED_COLUMN` where a row has it; a row written before that column
    existed (an older run folder) counts the sum of the epochs' `epoch_time_s`
    instead, which leaves out the time between epochs (checkpoints) and
    before the first (start-up).
    """
    out, total = [], 0.0
    for row in rows:
        value = row.get(ELAPSED_COLUMN)
        if value in (None, "", "NA"):
            total += float(row["epoch_time_s"])
        else:
            total = float(value)
        out.append(total)
    return out


def _epoch(row):
    """A history row's epoch, or None if it has none (a row cut short by a kill)."""
    try:
        return int(row["epoch"])
    except (KeyError, TypeError, ValueError):
        return None


def _check_row(row):
    """Raises ValueError unless every field of a kept row is a number."""
    if None in row or None in row.values() or _epoch(row) is None:
        raise ValueError(f"row {dict(row)!r} does not match the header")
    for value in row.values():
        float(value)  # raises ValueError naming the value


def trim_history(path, epochs_done):
    """Drops CSV rows of epochs the backup does not cover (they will be redone).

    A history written before `ELAPSED_COLUMN` existed gets that column
    (`elapsed_seconds`), so that the rows the resumed run appends match the
    header: Keras's CSVLogger writes its columns in sorted order after `epoch`.

    Returns:
        The rows kept.

    Raises:
        RunError: If the file, or a row of an epoch the backup covers, is damaged.
    """
    path = Path(path)
    try:
        rows = read_history(path)
        if rows and "epoch" not in rows[0]:
            raise ValueError("no 'epoch' column in the header")
        keep = [r for r in rows if _epoch(r) is not None and _epoch(r) < epochs_done]
        for row in keep:
            _check_row(row)
        if len(keep) < epochs_done:
            raise ValueError(f"{len(keep)} rows for the {epochs_done} epochs of the backup")
    except (OSError, ValueError, csv.Error) as e:
        raise RunError(f"the training history {path} is damaged ({one_line(e, 120)}); "
                       f"{OVERWRITE_HINT}") from e
    fields = list(rows[0]) if rows else []
    if keep and ELAPSED_COLUMN not in fields:
        keep = [dict(r, **{ELAPSED_COLUMN: repr(t)}) for r, t in zip(keep, elapsed_seconds(keep))]
        fields = ["epoch", *sorted({*fields, ELAPSED_COLUMN} - {"epoch"})]
    elif len(keep) == len(rows):
        return keep
    if keep:
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(keep)
    else:
        path.unlink()
    return keep


def print_summary(results):
    """Prints the results of a finished run: per-head table, split, speed, files."""
    lines = [
        "",
        "| head | val accuracy | val loss |",
        "|------|-------------:|---------:|",
    ]
    for head, acc in results["val_accuracy"].items():
        lines.append(f"| {head} | {acc:.4f} | {results['val_loss'][head]:.4f} |")
    lines += [
        "",
        f"Held-out split: {results['num_val']} images ({results['val_source']}); "
        f"final weights: {results['final_weights']}; best val_main_accuracy "
        f"{results['best_val_main_accuracy']:.4f} at epoch {results['best_epoch']}.",
        f"Wall time {results['wall_time_s']:.1f} s; training "
        f"{results['train_images_per_second']:.0f} images/s (median of epochs) on {results['devices']} device(s).",
        f"Model: {results['model']}; SavedModel: {results['saved_model'] or 'not exported'}.",
    ]
    evaluation = results.get("evaluation")
    if evaluation:
        top5 = evaluation.get("top5_accuracy")
        lines.append(f"Evaluation (main head{', flip TTA' if evaluation['tta_flip'] else ''}): "
                     f"top-1 {evaluation['top1_accuracy']:.4f}"
                     + (f", top-5 {top5:.4f}" if top5 is not None else "")
                     + f"; per-class figures in {evaluation['file']}, confusion.png.")
    print("\n".join(lines))


# ---- command line -------------------------------------------------------------
