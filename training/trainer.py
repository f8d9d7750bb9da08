"""One training run, start to finish: the job behind `python -m training.cifar`.

`train` checks the run folder and takes its lock (`training.run`), settles with the
other processes of a multi-worker run who resumes what (`training.distributed`), builds
the data and the model (`training.data`, `training.recipe`), trains the phases with the
run's callbacks, evaluates the final weights, saves `model.keras`, exports the
SavedModel and writes `results.json` last (`training.results`).
"""

import contextlib
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

from keras_googlenet._internal.environment import tensorflow_available
from keras_googlenet._internal.fileio import atomic_save_model
from training.cli import one_line
from training.config import ConfigError
from training.distributed import (check_same_epoch, check_same_settings, copy_resume_state,
                                  gather, initialize, is_chief, process_callbacks,
                                  process_count, process_index, receive_run_state,
                                  send_run_state)
from training.precision import calibrate
from training.results import run_results, write_results
from training.run import (
    RunError,
    check_folders,
    elapsed_seconds,
    print_summary,
    run_lock,
    run_state,
    start_run_folder,
    trim_history,
    write_failed,
)


class ExportFailed(RuntimeError):
    """The SavedModel export failed after training; one line for the user."""


def train(config, callbacks=()):
    """Trains, evaluates, saves and exports one run.

    Re-running an unfinished run with the same settings resumes it from its
    last completed epoch; a finished run (one with `results.json`) is only
    trained again with `overwrite=True`. Nothing in the run folder is touched
    until the data has loaded and the model is built, so bad inputs leave an
    earlier run intact; `--overwrite` replaces a run only then. One process at
    a time trains a run (`training.run.run_lock`).

    Args:
        config: A `TrainConfig` (resolved here if it is not already).
        callbacks: More `keras.callbacks.Callback`s for `model.fit` (they run
            after the run's own loggers and before its backup, and see every
            metric of the epoch's logs; `benchmarks.time_to_accuracy` stops a
            run at a target with one).

    Returns:
        The results dict also written to `runs/<name>/results.json`.

    Raises:
        ConfigError, DataError, RunError: For bad settings, data or run state
            (RunError also when another process trains the run, or when a
            write fails: the run then resumes when run again).
        TrainingDiverged: If the loss becomes NaN or infinite.
        ExportFailed: If the SavedModel export fails (the same call retries it).
    """
    from training.data import check_source  # here, as in calibrate: after the CLI set-up

    started = time.time()
    initialize(config)  # --strategy multi-worker: before anything else uses the backend
    config = config.resolve()
    check_source(config)  # bad data stops here, not after the measurement (tens of seconds)
    config = calibrate(config)
    check_same_settings(config)
    callbacks = [*callbacks, *process_callbacks()]  # multi-worker: print the weights' digest
    if not is_chief():
        return _train_other_process(config, started, callbacks)
    with contextlib.ExitStack() as stack:
        try:
            check_folders(config)
            stack.enter_context(run_lock(config))
            state = run_state(config)
        except RunError:
            send_run_state(None)  # tell the other processes (a no-op in one process)
            raise
        send_run_state(state)
        return _train(config, started, state, callbacks)


def _train_other_process(config, started, extra_callbacks):
    """`train` on a process other than the chief of a `--strategy multi-worker` run.

    It trains exactly as the chief does (the same callbacks, so that every
    process takes part in the same computations), but in a throwaway copy of
    the run folder that is deleted when it ends: only the chief writes the
    run folder (and exports). To resume, it copies the chief's backup from
    the run folder, which must be on a filesystem all processes share.
    """
    state = receive_run_state(config)
    with tempfile.TemporaryDirectory(prefix=f"{config.name}-process{process_index()}-") as tmp:
        local = dataclasses.replace(config, runs_dir=tmp, export=False, verbose=0)
        return _train(local, started, state, extra_callbacks,
                      shared_run_dir=Path(config.run_dir))


def _train(config, started, state, extra_callbacks=(), shared_run_dir=None):
    """`train` once the configuration is valid and the run's lock is held
    (`state`: `run_state`'s answer; `shared_run_dir`: the chief's run folder,
    on the other processes of a multi-worker run)."""
    import keras

    from training.callbacks import AtomicBackupAndRestore
    from training.data import build_datasets
    from training.recipe import (
        build_model, compile_model, fan_out_datasets, load_pretrained, setup_runtime,
    )

    keras.backend.clear_session()  # also resets the dtype policy and distribution
    scope, replicas = setup_runtime(config)
    shard = (process_index(), process_count())
    data = build_datasets(config, replicas=replicas, shard=shard)
    num_classes = len(data.class_names)
    try:
        with scope:
            model = build_model(config, num_classes)
            compile_model(model, config, data.steps_per_epoch)
    except ConfigError:
        raise
    except Exception as e:  # out of memory, above all
        raise ConfigError(f"the model could not be built ({type(e).__name__}: "
                          f"{one_line(e, 150)}); lower --width, --image-size or "
                          "--batch-size") from e

    # Check what a resumed run reads before writing anything: nothing so far
    # has touched the run folder, so a run that cannot start leaves it intact.
    run_dir = Path(config.run_dir)
    backup = AtomicBackupAndRestore(str(run_dir / "backup"), delete_checkpoint=False)
    resumed_from, history = 0, []
    try:
        if shared_run_dir is not None and state == "resume":
            copy_resume_state(shared_run_dir, run_dir)
        if state == "resume":
            try:
                resumed_from = backup.saved_epoch()
                history = trim_history(run_dir / "history.csv", resumed_from)
            except RunError:  # damaged: --overwrite (which the message offers) starts over
                if not config.overwrite:
                    raise
                state = "overwrite"
    except RunError:
        gather([-1])  # check_same_epoch's answer of a process that cannot resume
        raise
    check_same_epoch(resumed_from)
    if config.weights is not None and not resumed_from:
        # Only a run that starts from scratch loads them: a resumed one restores
        # its own trained weights from the backup.
        load_pretrained(model, config.weights)
    start_run_folder(config, state, data.class_names, config.model_config(num_classes))
    data = fan_out_datasets(data, model.output_names)
    callbacks = _callbacks(config, data, backup, history, started, extra_callbacks, scope)

    print(f"Run {config.name}: {data.num_train} training / {data.num_val} held-out images "
          f"({data.val_source}), {len(data.class_names)} classes, {keras.backend.backend()} "
          f"backend, {replicas} device(s), {config.precision_text}, jit={config.jit}, "
          f"{data.pipeline} input pipeline, peak lr {config.peak_lr:g} (--lr {config.lr:g}, "
          f"--lr-scaling {config.lr_scaling})")
    if shard[1] > 1:
        print(f"Process {shard[0]} of {shard[1]}: {config.batch_size // shard[1]} of every "
              f"global batch of {config.batch_size}, {data.steps_per_epoch} steps per epoch; "
              f"its share of the data: {data.share[0]} training / {data.share[1]} held-out "
              "images" + ("; it writes the run folder" if shared_run_dir is None else
                 f"; process 0 writes the run folder {shared_run_dir}"))
    if resumed_from >= config.epochs:
        print(f"All {config.epochs} epochs were trained already (backup in {run_dir / 'backup'}): "
              "finishing the run")
    elif resumed_from:
        print(f"Resuming from the backup in {run_dir / 'backup'}: "
              f"epoch {resumed_from + 1} of {config.epochs}")
    elif state == "resume":
        print(f"Run {config.name} was interrupted before it finished an epoch: starting it over "
              "from epoch 1")
    try:
        results = _fit_and_save(model, config, data, callbacks, started=started, state=state,
                                replicas=replicas, resumed_from=resumed_from, scope=scope)
    except OSError as e:  # disk full, above all: every file written so far is whole
        raise write_failed(e, backup) from e
    if shared_run_dir is None:
        print_summary(results)
    return results


def _fit_phases(model, config, data, callbacks, scope):
    """Trains the phases of `training.recipe.run_phases` that the backup has not
    finished, each with `model.fit` after `enter_phase` (its trainable layers,
    a new optimizer); returns their records for `results.json`.

    The backup (the last callback) records the phase whose optimizer state it
    holds; on entering a later phase it is rewritten at once with the new
    phase's state, so a run killed at any instant resumes in the right phase.
    """
    from training.recipe import enter_phase, run_phases, trainable_parameters

    backup = callbacks[-1]
    phases = run_phases(config)
    records = [{"name": p.name, "epochs": [p.first_epoch + 1, p.end_epoch], "trains": p.describe(),
                "trainable_parameters": trainable_parameters(model, p),
                "peak_learning_rate": p.peak_lr, "warmup_epochs": p.warmup_epochs}
               for p in phases]
    saved = backup.saved_phase()  # None: no backup, or one from before phases were recorded
    names = [p.name for p in phases]
    for phase in phases[names.index(saved) if saved in names else 0:]:
        with scope:
            enter_phase(model, config, data.steps_per_epoch, phase)
        if len(phases) > 1:
            r = records[names.index(phase.name)]
            print(f"Phase {phase.name}: epochs {phase.first_epoch + 1}-{phase.end_epoch} train "
                  f"{phase.describe()} ({r['trainable_parameters']:,} parameters), learning "
                  f"rate up to {phase.peak_lr:g}")
        backup.phase = phase.name
        if phase.first_epoch and backup.saved_phase() != phase.name:
            backup.save(model, phase.first_epoch)  # it held the previous phase's optimizer
        model.fit(
            data.train,
            validation_data=data.val,
            initial_epoch=phase.first_epoch,  # the backup moves it on when it resumes
            epochs=phase.end_epoch,
            callbacks=callbacks,
            verbose=0,  # training.progress.RunProgress reports instead (see _callbacks)
            shuffle=False,  # the datasets shuffle themselves
        )
    return records


def _fit_and_save(model, config, data, callbacks, *, started, state, replicas, resumed_from,
                  scope):
    """Trains, then writes the final model, the export and `results.json`; returns
    the results (`started`: the run's start time; `state`: `run_state`'s answer)."""
    run_dir = Path(config.run_dir)
    phases = _fit_phases(model, config, data, callbacks, scope)
    from training.evaluation import HeldOutEvaluation, unalias_ema_weights

    # With --ema, fit() has swapped the averaged weights in (finalize_variable_values).
    if config.ema:
        unalias_ema_weights(model)
    final = model.evaluate(data.val, return_dict=True, verbose=0)
    tta = None
    if config.tta_flip:  # the per-epoch evaluation's TTA model, on the final weights
        [evaluation] = [c for c in callbacks if isinstance(c, HeldOutEvaluation)]
        tta = evaluation.accuracies(tta=True)
    from training.evaluate import evaluate_finished_training
    report = evaluate_finished_training(model, config, data, scope)  # flip TTA with --tta-flip
    atomic_save_model(model, run_dir / "model.keras")
    # The export may replace saved_models/<name> of a run this one resumes or overwrites.
    saved_model = _export(model, config, data.class_names,
                          allow_overwrite=config.overwrite or state != "new")

    results = run_results(config, data, final, tta, report, phases, started=started,
                          replicas=replicas, resumed_from=resumed_from, saved_model=saved_model)
    write_results(run_dir, results)
    shutil.rmtree(run_dir / "backup", ignore_errors=True)
    return results


def _callbacks(config, data, backup, history, started, extra=(), scope=None):
    """The callbacks of `model.fit`, in the order they must run (`extra` last
    but the backup).

    `history` holds the rows of the epochs the backup covers (the later ones
    are redone): the best checkpoint is only replaced by a better epoch, and
    the run's wall time continues from theirs. `started`: this session's start
    (`time.time()`); `scope`: `setup_runtime`'s.
    """
    import keras

    from keras_googlenet._internal.environment import accelerator
    from training.callbacks import AtomicModelCheckpoint, EpochStats, PlotCurves, StopOnNaN
    from training.evaluation import HeldOutEvaluation, selection_metric
    from training.progress import RunProgress, cpu_advice

    run_dir = Path(config.run_dir)
    metric = selection_metric(config)
    best_so_far = max((float(r[metric]) for r in history), default=None)
    callbacks = [
        StopOnNaN(),
        EpochStats(data.steps_per_epoch * config.batch_size, started=started,  # before the loggers
                   elapsed_before=elapsed_seconds(history)[-1] if history else 0.0),
    ]
    if config.tta_flip or config.ema:  # before the checkpoint and the loggers
        callbacks.append(HeldOutEvaluation(data.val, tta_flip=config.tta_flip, ema=config.ema,
                                           scope=scope))
    callbacks += [
        AtomicModelCheckpoint(
            str(run_dir / "best.keras"),
            monitor=metric,
            mode="max",
            save_best_only=True,
            initial_value_threshold=best_so_far,
        ),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        PlotCurves(run_dir),  # after the CSVLogger: it draws history.csv
    ]
    if tensorflow_available():  # Keras's TensorBoard writer needs TensorFlow
        callbacks.append(
            keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False, profile_batch=0)
        )
    else:
        print("notice: TensorBoard logs skipped: TensorFlow is not installed "
              "(history.csv has the same figures)", file=sys.stderr)
    if config.verbose:  # 1: a live line on a terminal; 2: one line per epoch
        no_gpu = accelerator()[1] is None
        callbacks.append(RunProgress(
            config.epochs, data.steps_per_epoch, config.batch_size,
            advice=cpu_advice(config) if no_gpu else "", live=None if config.verbose == 1 else False,
        ))
    callbacks += list(extra)
    # Last, so that a backup marks an epoch whose CSV row and checkpoint exist.
    callbacks.append(backup)
    return callbacks


def _export(model, config, class_names, allow_overwrite):
    """Exports the main head as a SavedModel; skipped without TensorFlow.

    Raises:
        ExportFailed: If the export fails. The run then stays unfinished (its
            backup is kept), so running the same command again retries it.
    """
    import keras

    if not config.export:
        return None
    saved = Path(config.run_dir) / "model.keras"
    if not tensorflow_available():
        print(f"notice: SavedModel export skipped: TensorFlow is not installed ({saved} "
              "was saved)", file=sys.stderr)
        return None
    if keras.backend.backend() != "tensorflow":
        print(f"notice: SavedModel export skipped: it needs KERAS_BACKEND=tensorflow ({saved} "
              f"was saved; export it with KERAS_BACKEND=tensorflow python -m "
              f"training.export {config.run_dir} --name {config.name} "
              f"--export-dir {config.export_dir})", file=sys.stderr)
        return None
    from keras_googlenet.export import export_saved_model

    try:
        path = export_saved_model(
            model, config.export_path, labels=class_names, head="main",
            overwrite=allow_overwrite, config=config.model_config(len(class_names)),
        )
    except Exception as e:  # the trained model is safe in model.keras either way
        raise ExportFailed(
            f"the SavedModel export to {config.export_path} failed ({type(e).__name__}: {e}); "
            f"{saved} was saved; run the same command again to retry the export"
        ) from e
    return str(path)
