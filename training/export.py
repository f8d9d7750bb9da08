"""Export a training run (or a `.keras` file) to SavedModel and TFLite.

    python -m training.export MODEL --name NAME

turns a `.keras` file or a `training.cifar` run folder (`runs/NAME`) into
`saved_models/NAME/` with `keras_googlenet.export.export` (see that package
for the files and their contract). A run folder gives the export its
context: `labels.txt`, `model_config.json` (copied beside the export), and
`config.json`, from which the run's own training split (int8 calibration)
and held-out validation split (the accuracy check) are recomputed with
`training.data`. `--calibration-data` and `--eval-data` take an image folder
or an archive (extracted as `training.data` does).

    python -m training.export MODEL --preset DIR

writes a KerasHub preset of the model's main classifier instead (or as well,
with `--name`) with `keras_googlenet.hub.save_preset`; MODEL then needs its
`model_config.json` (a run folder has one). See docs/presets.md.
"""

import contextlib
import dataclasses
import os
import shlex
import shutil
import sys
import tempfile

import numpy as np

from keras_googlenet import export as ex
from keras_googlenet.architecture import HEADS, MAIN_HEAD
from keras_googlenet.config import MODEL_CONFIG_FILE, GoogLeNetConfig
from keras_googlenet.export.errors import export_directory
from keras_googlenet._internal.fileio import remove_stale_siblings, temporary_directory_sibling
from training.cli import (
    OneLineParser,
    UsageError,
    add_framework_logs_flag,
    import_backend_quietly,
    one_line,
)

#: Files a run folder of `training.cifar` holds (the final model is exported).
RUN_MODEL_FILE = "model.keras"
RUN_CONFIG_FILE = "config.json"


def _why(error):
    """`"Type: message"` on one line, for the ExportError messages."""
    return f"{type(error).__name__}: {one_line(error)}"


@dataclasses.dataclass
class Source:
    """What `load_source` found: the model and, for a run folder, its context."""

    path: str
    model: object
    labels: list = None
    run_dir: str = None
    run_config: dict = None
    model_config: GoogLeNetConfig = None


def _read_run_folder(path):
    """`(run_config, labels, model_config)` of a run folder, each None when absent."""
    run_config = labels = model_config = None
    config_path = os.path.join(path, RUN_CONFIG_FILE)
    if os.path.isfile(config_path):
        from training.config import read_config_dict

        try:
            run_config = read_config_dict(config_path)
        except (OSError, ValueError) as e:
            raise ex.ExportError(f"Could not read {config_path!r}: {_why(e)}") from e
    labels_path = os.path.join(path, ex.LABELS_FILE)
    if os.path.isfile(labels_path):
        labels = ex.read_labels(labels_path)
    if os.path.isfile(os.path.join(path, MODEL_CONFIG_FILE)):
        try:
            model_config = GoogLeNetConfig.load(path)
        except ValueError as e:
            raise ex.ExportError(one_line(e)) from e
    return run_config, labels, model_config


def load_source(path):
    """Loads a `.keras` file or a run folder (`model.keras`, `labels.txt`, `config.json`,
    `model_config.json`).

    Raises:
        ExportError: If the file or folder is missing, the model cannot be read, or
            a run folder's `model_config.json` does not rebuild its model.
    """
    import keras

    path = os.fspath(path)
    run_dir = run_config = labels = model_config = None
    if os.path.isdir(path):
        run_dir = path
        model_path = os.path.join(path, RUN_MODEL_FILE)
        if not os.path.isfile(model_path):
            raise ex.ExportError(
                f"Run folder {path!r} has no {RUN_MODEL_FILE} (it is written when the run "
                f"finishes): finish the run by running its training command again, or export "
                f"the best checkpoint so far with `python -m training.export "
                f"{os.path.join(path, 'best.keras')} --name NAME`."
            )
        run_config, labels, model_config = _read_run_folder(path)
    elif os.path.exists(path):
        model_path = path
    else:
        raise ex.ExportError(
            f"Model not found: {path!r} (expected a .keras file or a run folder).")
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as e:  # Keras raises many types for unreadable files.
        raise ex.ExportError(f"Could not load model {model_path!r}: {_why(e)}") from e
    if not isinstance(model, keras.Model) or not model.inputs:
        raise ex.ExportError(f"{model_path!r} does not hold a functional Keras model.")
    if model_config is not None:  # before anything is read or written for the export
        try:
            ex.check_model_config(model_config, model)
        except ex.ExportError as e:
            raise ex.ExportError(f"{os.path.join(path, MODEL_CONFIG_FILE)}: {e}") from e
    return Source(path=path, model=model, labels=labels, run_dir=run_dir,
                  run_config=run_config, model_config=model_config)


def run_data(run_dir, run_config, hw, *, hint="pass --calibration-data DIR."):
    """The run's `(x_train, y_train, x_val, y_val, class_names)` via `training.data`.

    The run's `image_size` must be the model's input size `hw` (checked before
    anything is decoded: a tampered `config.json` would decode the whole
    dataset at its size first). `hint` ends the error when the data cannot be
    loaded (`training.evaluate` names its own flag).
    """
    from training.config import TrainConfig
    from training.fields import settings
    from training.data import load_arrays

    if run_config is None:
        raise ex.ExportError(f"Run folder {run_dir!r} has no {RUN_CONFIG_FILE}.")
    size = run_config.get("image_size")
    if tuple(hw) != (size, size):
        raise ex.ExportError(
            f"{os.path.join(run_dir, RUN_CONFIG_FILE)}: the run's images must be the model's "
            f"input size {tuple(hw)}. Received: image_size={size!r}")
    try:
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        names |= {s.name for s in settings(TrainConfig)}  # a config.json of the flat layout
        config = TrainConfig.from_dict({k: v for k, v in run_config.items() if k in names})
        return load_arrays(config)
    except Exception as e:
        raise ex.ExportError(
            f"Could not load run folder {run_dir!r}'s data ({_why(e)}); {hint}"
        ) from e


def resolve_image_dir(path):
    """A folder of images, or an archive turned into one by `training.data.resolve_data_dir`."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return path
    if not os.path.exists(path):
        raise ex.ExportError(f"Image folder not found: {path!r}.")
    from training.data import resolve_data_dir

    try:
        return os.fspath(resolve_data_dir(path))
    except Exception as e:
        raise ex.ExportError(f"Could not open image archive {path!r}: {_why(e)}") from e


def export_run(model_path, name, *, export_dir="saved_models", formats=None,
               calibration_data=None, eval_data=None, head=MAIN_HEAD, overwrite=False,
               calibration_samples=256, eval_samples=1000, threads=1, repeats=50, seed=0,
               metadata=True, log=print, command=None):
    """Exports `model_path` (a `.keras` file or run folder) to `export_dir/name/`.

    Calibration images (for `int8`) come from `calibration_data` (an image
    folder or archive) or, for a run folder, from the run's own training split.
    The evaluation sample is, in order of preference: `eval_data` (a folder with
    one sub-folder per class), the run's held-out validation split, the
    calibration images (not held out), or random images (agreement only).

    `formats` defaults to all of `keras_googlenet.export.FORMATS`; `metadata`
    is `keras_googlenet.export.export`'s (True, False or a dict of fields).

    Returns:
        The report (also written to `export_report.json`), a dict.

    Raises:
        ExportError: For any problem with the inputs (missing or unreadable
            model, no `head` output, int8 without calibration images, existing
            export without `overwrite`, a model needing non-builtin ops).
    """
    formats = ex.parse_formats(ex.FORMATS if formats is None else formats)
    if head not in HEADS:
        raise ex.ExportError(f"--head must be one of {', '.join(HEADS)}; got {head!r}.")
    if not name or os.sep in name or name in (".", ".."):
        raise ex.ExportError(f"--name must be a plain folder name; got {name!r}.")
    destination = os.path.abspath(os.path.join(os.fspath(export_dir), name))
    ex.check_export_destination(destination, overwrite)
    with _scratch_temp_folder(destination):
        return _export_run(model_path, destination, formats=formats, head=head,
                           calibration_data=calibration_data, eval_data=eval_data,
                           overwrite=overwrite, calibration_samples=calibration_samples,
                           eval_samples=eval_samples, threads=threads, repeats=repeats,
                           seed=seed, metadata=metadata, log=log, command=command)


@contextlib.contextmanager
def _scratch_temp_folder(destination):
    """Points Python's temporary folder at a sibling of `destination` while exporting.

    TensorFlow writes temporary files while exporting (autograph's
    `__autograph_generated_file*.py`, removed only at a normal exit); here they
    go to `.tmp-<pid>-NAME-system_*` beside the export, which this function
    removes at the end and, after a kill, the next export of NAME removes
    (`keras_googlenet._internal.fileio.remove_stale_siblings`), with any other leftover
    temporary folders of NAME. Folders it had to create for it are removed
    again when the export failed (they are left empty).
    """
    created, folder = [], os.path.dirname(destination)  # folders to remove if left empty
    while not os.path.isdir(folder) and folder != os.path.dirname(folder):
        created.append(folder)
        folder = os.path.dirname(folder)
    try:
        remove_stale_siblings(destination)
        scratch = temporary_directory_sibling(destination, "system_")
    except OSError as e:
        raise ex.ExportError(
            f"Cannot write in --export-dir {os.path.dirname(destination)!r}: "
            f"{e.strerror or e}."
        ) from e
    previous, tempfile.tempdir = tempfile.tempdir, scratch
    try:
        yield scratch
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(scratch, ignore_errors=True)
        for folder in created:  # a failed export leaves no new --export-dir behind
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def _export_run(model_path, destination, *, formats, head, calibration_data, eval_data,
                overwrite, calibration_samples, eval_samples, threads, repeats, seed, metadata,
                log, command):
    source = load_source(model_path)
    _, hw = ex.check_exportable(source.model, head, source.path)
    labels = ex.resolve_labels(source.labels, ex.num_classes(source.model, head))
    is_run = source.run_dir is not None and source.run_config is not None
    run_arrays = None

    def get_run_arrays():
        nonlocal run_arrays
        if run_arrays is None:
            log(f"Loading run data ({source.run_config.get('data', '?')}) ...")
            run_arrays = run_data(source.run_dir, source.run_config, hw)
            if tuple(run_arrays[0].shape[1:3]) != hw:
                raise ex.ExportError(
                    f"The run's images are {tuple(run_arrays[0].shape[1:3])}, the model "
                    f"takes {hw}."
                )
        return run_arrays

    images = {}
    if "int8" in formats:
        if calibration_data is not None:
            images["calibration_data"] = resolve_image_dir(calibration_data)
        elif is_run:
            images["calibration_images"] = get_run_arrays()[0]
            images["calibration_source"] = f"training split of run {source.run_dir}"
    if eval_data is not None:
        images["eval_data"] = resolve_image_dir(eval_data)
    elif is_run:
        try:
            _, _, x_val, y_val, class_names = get_run_arrays()
        except ex.ExportError as e:
            log(f"warning: no held-out sample from the run ({e})")
            x_val = []
        if len(x_val):
            if source.labels is None and len(class_names) == len(labels):
                labels = [str(c) for c in class_names]
            if list(class_names) != labels:
                raise ex.ExportError(
                    f"The run's class names {list(class_names)} differ from its labels.txt."
                )
            images.update(eval_images=x_val, eval_labels=np.asarray(y_val),
                          eval_source=f"held-out validation split of run {source.run_dir}")
    return ex.export(
        source.model, destination, formats=formats, labels=labels, config=source.model_config,
        head=head, overwrite=overwrite, calibration_samples=calibration_samples,
        eval_samples=eval_samples, threads=threads, repeats=repeats, seed=seed,
        metadata=metadata, log=log, command=command, source=source.path, **images,
    )


def export_preset(model_path, preset_dir, *, overwrite=False, log=print):
    """Writes a KerasHub preset of `model_path` (a run folder) to `preset_dir`.

    The folder is written whole or not at all (as exports are); the run's
    `labels.txt` gives the preset's class names.

    Returns:
        The `keras_googlenet.hub.GoogLeNetImageClassifier` that was saved.

    Raises:
        ExportError: If the model cannot be read, has no `model_config.json`, or
            `preset_dir` exists and `overwrite` is False.
    """
    destination = os.path.abspath(os.fspath(preset_dir))
    ex.check_export_destination(destination, overwrite)
    source = load_source(model_path)
    if source.model_config is None:
        raise ex.ExportError(
            f"A preset needs the model's {MODEL_CONFIG_FILE} (a run folder has one); "
            f"{model_path!r} has none."
        )
    try:
        from keras_googlenet import hub
    except ImportError as e:
        raise ex.ExportError(one_line(e)) from e
    with export_directory(destination, overwrite) as tmp:
        try:
            classifier = hub.save_preset(source.model, tmp, config=source.model_config,
                                         class_names=source.labels)
        except ValueError as e:
            raise ex.ExportError(one_line(e)) from e
    log(f"Wrote the KerasHub preset {destination}/")
    return classifier


def build_parser():
    """The command line of `python -m training.export`."""
    parser = OneLineParser(
        prog="python -m training.export",
        description="Export a trained GoogLeNet (a training run folder or a .keras file) to "
        "SavedModel and TFLite, check every artifact against the Keras model and report "
        "size, latency and agreement.",
    )
    parser.add_argument("model", metavar="MODEL", help="a .keras file or a training run folder")
    out = parser.add_argument_group("output")
    out.add_argument("--name", help="export folder name under --export-dir (needed unless "
                     "--preset is given)")
    out.add_argument("--preset", metavar="DIR",
                     help="write a KerasHub preset of the main classifier to DIR (see "
                     "docs/presets.md); with --name, the export is written too")
    out.add_argument("--export-dir", default="saved_models", help="default: %(default)s")
    out.add_argument("--formats", default=",".join(ex.FORMATS),
                     help="comma-separated subset of %(default)s (default: all)")
    out.add_argument("--overwrite", action="store_true", help="replace an existing export")
    add_framework_logs_flag(out)
    meta = parser.add_argument_group(
        "TFLite metadata (read by MediaPipe Tasks and Android Studio; labels are embedded too)")
    meta.add_argument("--no-metadata", action="store_true",
                      help="write plain .tflite files (labels only in labels.txt)")
    for field in ("author", "license", "version"):
        meta.add_argument(f"--model-{field}", metavar=field.upper(),
                          help=f"the metadata's {field} field")
    net = parser.add_argument_group("network")
    net.add_argument("--head", choices=HEADS, default=MAIN_HEAD,
                     help="which classifier to deploy; aux1/aux2 export the cheaper early-exit "
                     "network")
    data = parser.add_argument_group("data")
    data.add_argument("--calibration-data", metavar="DIR",
                      help="image folder (or archive) for int8 calibration; default: a run "
                      "folder's training split")
    data.add_argument("--eval-data", metavar="DIR",
                      help="image folder with one sub-folder per class for the held-out check; "
                      "default: a run folder's validation split")
    data.add_argument("--calibration-samples", type=int, default=256, metavar="N")
    data.add_argument("--eval-samples", type=int, default=1000, metavar="N")
    data.add_argument("--seed", type=int, default=0)
    bench = parser.add_argument_group("benchmark")
    bench.add_argument("--threads", type=int, default=1, help="LiteRT threads (default 1)")
    bench.add_argument("--repeats", type=int, default=50, help="timed runs per artifact")
    return parser


def _metadata_argument(args):
    """`export`'s `metadata` argument from --no-metadata and --model-author/license/version."""
    given = {field: getattr(args, f"model_{field}") for field in ("author", "license", "version")
             if getattr(args, f"model_{field}") is not None}
    if args.no_metadata:
        if given:
            flags = ", ".join(f"--model-{field}" for field in given)
            raise UsageError(f"{flags} cannot be combined with --no-metadata")
        return False
    return given or True


def main(argv=None):
    """Command-line entry point; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    import_backend_quietly(argv)
    try:
        args = build_parser().parse_args(argv)
        for flag in ("calibration_samples", "eval_samples", "threads", "repeats"):
            if getattr(args, flag) < 1:
                raise UsageError(f"--{flag.replace('_', '-')} must be >= 1")
        if not 0 <= args.seed < 2**32:
            raise UsageError(f"--seed must be from 0 to {2**32 - 1}; got {args.seed}")
        metadata = _metadata_argument(args)
        if args.name is None and args.preset is None:
            raise UsageError("one of --name and --preset is required")
    except UsageError as e:
        print(f"error: {e} (see --help)", file=sys.stderr)
        return 2
    try:
        if args.preset is not None:
            export_preset(args.model, args.preset, overwrite=args.overwrite,
                          log=lambda msg: print(msg, file=sys.stderr))
            if args.name is None:
                print(f"Wrote {args.preset}/")
                return 0
        report = export_run(
            args.model, args.name, export_dir=args.export_dir, formats=args.formats,
            calibration_data=args.calibration_data, eval_data=args.eval_data, head=args.head,
            overwrite=args.overwrite, calibration_samples=args.calibration_samples,
            eval_samples=args.eval_samples, threads=args.threads, repeats=args.repeats,
            seed=args.seed, metadata=metadata, log=lambda msg: print(msg, file=sys.stderr),
            command=shlex.join(["python", "-m", "training.export", *argv]),
        )
    except ex.ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # e.g. disk full: the old export (if any) is still in place
        print(f"error: could not write the export: {one_line(e)}", file=sys.stderr)
        return 1
    print(ex.format_report(report))
    print(f"\nWrote {os.path.join(args.export_dir, args.name)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
