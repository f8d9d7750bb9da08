"""Evaluate a trained model on labelled images: confusion matrix, top-1/top-5, per-class figures.

    python -m training.evaluate runs/my-run                       # its held-out split again
    python -m training.evaluate runs/my-run --data-dir photos/    # photos/<class>/<image>
    python -m training.evaluate model.keras --data-dir photos/ --output-dir report/

`evaluate` scores the main head on every image, computes the figures with
`training.metrics.classification_report` and writes two files into a folder:

- `evaluation.json`: the number of images, the class names, top-1 and (with
  more than 5 classes) top-5 accuracy, each class's support, accuracy,
  precision, recall and F1, their macro means, and the confusion matrix
  (counts; rows: true class, columns: predicted class);
- `confusion.png`: that matrix as a picture, each row coloured by its share
  of the class's images (`keras_googlenet._internal.figures`, as `curves.png`).

Every training run calls it at its end on the held-out split
(`evaluate_finished_training`): the files sit beside `results.json`, which
gets a summary (`results["evaluation"]`). With flip test-time augmentation
(`--tta-flip`) the scores are those of `training.evaluation.flip_tta_model`,
the model behind `val_main_accuracy_tta`, so the evaluation's top-1 is the
run's `val_accuracy_tta["main"]`, else its `val_accuracy["main"]`.

The command line evaluates a finished run folder (or a `.keras` file) again:
on the run's held-out split (recomputed from its `config.json`, as
`training.export` does), or on a folder of images (`FOLDER/<class>/<image>`,
or an archive of one), whose class folders must be exactly the run's classes.
"""

import argparse
import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from keras_googlenet.architecture import MAIN_HEAD
from keras_googlenet._internal.fileio import atomic_write_json
from training.cli import OneLineParser, UsageError, add_framework_logs_flag, one_line
from training.metrics import TOP_K, classification_report

#: The files `evaluate` writes (beside `results.json` in a run folder).
EVALUATION_FILE, CONFUSION_FILE = "evaluation.json", "confusion.png"

#: Classes up to which the picture writes each cell's count and the class names.
ANNOTATE_MAX, NAMES_MAX = 20, 60


class EvaluationError(ValueError):
    """Bad input to the evaluation (a missing run, mismatched classes, ...); one line."""


# ---- scoring -------------------------------------------------------------------


def _batches(data):
    """`(images, labels[, weights])` tuples of numpy arrays from a `tf.data.Dataset`,
    a `keras.utils.PyDataset` or any iterable of such tuples."""
    import keras

    if isinstance(data, keras.utils.PyDataset):
        return (data[i] for i in range(len(data)))
    if hasattr(data, "as_numpy_iterator"):  # tf.data
        return data.as_numpy_iterator()
    return iter(data)


def array_batches(images, labels, batch_size=64):
    """`(images, labels)` batches of in-memory arrays, for `evaluate`."""
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size], labels[start:start + batch_size]


def _head_output(outputs, names, head):
    """The output `head` of a model's `predict_on_batch` result."""
    if isinstance(outputs, dict):
        return outputs[head]
    if isinstance(outputs, (list, tuple)):
        return outputs[names.index(head)]
    return outputs


def predict_scores(model, data, head=MAIN_HEAD):
    """Scores of one head of `model` on labelled batches, and the true labels.

    Args:
        model: A Keras model (its outputs: logits or probabilities).
        data: Batches of `(images, labels[, sample weights])`: labels one-hot
            or integer, or a dict of them by head (`training.recipe.fan_out_labels`);
            examples of weight 0 (the padding of a multi-device held-out split)
            are left out.
        head: The output to score (the only one of a single-output model).

    Returns:
        `(scores, labels)`: float32 `(images, classes)` and int64 `(images,)`.
    """
    import keras

    names = list(model.output_names)
    if head not in names:
        if len(names) != 1:
            raise EvaluationError(f"the model has no output {head!r} (outputs: {names})")
        head = names[0]
    if keras.backend.backend() == "jax":
        # A plain call would run the network op by op, compiling each op for
        # each new batch shape (about 250 small compilations for a GoogLeNet);
        # predict_on_batch compiles the whole forward pass once.
        forward = model.predict_on_batch
    else:
        # A plain call: no trace on TensorFlow, and under a tf.distribute strategy
        # (--strategy mirrored) predict_on_batch returns every replica's copy.
        def forward(x):
            return model(x, training=False)
    scores, labels = [], []
    for batch in _batches(data):
        x, y, *weights = batch
        y = np.asarray(_head_output(y, names, head) if isinstance(y, dict) else y)
        y = y.argmax(axis=-1) if y.ndim == 2 else y.astype(np.int64)
        out = keras.ops.convert_to_numpy(_head_output(forward(x), names, head))
        keep = np.asarray(weights[0]).reshape(-1) > 0 if weights else slice(None)
        scores.append(np.asarray(out, dtype="float32").reshape(len(y), -1)[keep])
        labels.append(y[keep])
    if not scores:
        raise EvaluationError("no images to evaluate")
    return np.concatenate(scores), np.concatenate(labels).astype(np.int64)


def evaluate(model, data, class_names, out_dir, *, tta_flip=False, scope=None, source=""):
    """Evaluates the main head of `model` on `data`; writes `evaluation.json` and
    `confusion.png` into `out_dir`.

    Args:
        model: The trained model (logits out, as built by `training.recipe`).
        data: Labelled batches (`predict_scores`).
        class_names: The classes, in output order.
        out_dir: The folder of the two files (created if needed).
        tta_flip: Score the mean of the softmax probabilities on each image and
            its mirror (`training.evaluation.flip_tta_model`), as `--tta-flip`.
        scope: The context to build the TTA model in (`setup_runtime`'s scope).
        source: What the images are, in words (recorded in the JSON).

    Returns:
        The report written to `evaluation.json` (`classification_report`'s,
        plus `head`, `tta_flip`, `source`).
    """
    if tta_flip:
        from training.evaluation import flip_tta_model

        with scope if scope is not None else contextlib.nullcontext():
            model = flip_tta_model(model)
    scores, labels = predict_scores(model, data)
    if scores.shape[1] != len(class_names):
        raise EvaluationError(f"the model has {scores.shape[1]} classes, the class names "
                              f"{len(class_names)}")
    report = {"head": MAIN_HEAD, "tta_flip": bool(tta_flip), "source": source,
              **classification_report(scores, labels, class_names)}
    report["notes"] = {
        "confusion_matrix": "counts; rows: true class, columns: predicted class (argmax)",
        "per_class": "accuracy: the share of the class's images predicted as it (its recall); "
                     "a ratio with nothing to count is 0 (precision of a class never "
                     "predicted: see 'predicted'; recall of a class without images: see "
                     "'support')",
        f"top{TOP_K}_accuracy": f"reported with more than {TOP_K} classes only",
    }
    write_evaluation(out_dir, report)
    return report


# ---- files ---------------------------------------------------------------------


def confusion_figure(report, title=""):
    """The confusion matrix of a report as a `matplotlib.figure.Figure`: cells
    coloured by their share of the row (the class's images), counts written in."""
    from keras_googlenet._internal.figures import new_figure

    counts = np.asarray(report["confusion_matrix"])
    names = report["class_names"]
    n = len(names)
    side = int(min(1600, max(560, 160 + 36 * n)))
    figure = new_figure((side + 120, side))
    axes = figure.subplots()
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of the true class's images")
    if n <= ANNOTATE_MAX:
        for i in range(n):
            for j in range(n):
                axes.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize="small",
                          color="white" if shares[i, j] > 0.5 else "black")
    if n <= NAMES_MAX:
        axes.set_xticks(range(n), names, rotation=90 if n > 8 else 0)
        axes.set_yticks(range(n), names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    top = f"top-1 {report['top1_accuracy']:.2%}"
    if f"top{TOP_K}_accuracy" in report:
        top += f", top-{TOP_K} {report[f'top{TOP_K}_accuracy']:.2%}"
    axes.set_title(f"{title + ': ' if title else ''}{report['num_images']} images, {top}"
                   + (", flip TTA" if report.get("tta_flip") else ""))
    return figure


def write_evaluation(out_dir, report, title=""):
    """Writes `evaluation.json` (atomically) and `confusion.png` (never fatal:
    a failure to draw is one notice on stderr) into `out_dir`."""
    from keras_googlenet._internal.figures import try_write_png

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / EVALUATION_FILE, report)
    try_write_png(out_dir / CONFUSION_FILE, lambda: confusion_figure(report, title or out_dir.name),
                  "the confusion matrix")


def summary(report):
    """The figures of a report that `results.json` repeats."""
    keys = ("top1_accuracy", f"top{TOP_K}_accuracy", "num_images", "tta_flip")
    return {k: report[k] for k in keys if k in report} | {"file": EVALUATION_FILE}


def evaluate_finished_training(model, config, data, scope=None):
    """The end-of-run evaluation of `training.cifar`: `evaluate` on the held-out
    split into the run folder; returns `summary` of it for `results.json`.

    With `--strategy multi-worker` it is skipped (returns None, with a notice):
    each process holds only its share of the held-out split, and
    `predict_on_batch` cannot gather the others'. Run `python -m
    training.evaluate RUN_DIR` after such a run.
    """
    from training.distributed import process_count

    if process_count() > 1:
        print("notice: the evaluation (evaluation.json, confusion.png) is skipped in a run over "
              f"several processes; run `python -m training.evaluate {config.run_dir}` after it",
              file=sys.stderr)
        return None
    report = evaluate(model, data.val, data.class_names, config.run_dir,
                      tta_flip=config.tta_flip, scope=scope,
                      source=f"held-out split: {data.val_source}")
    return summary(report)


# ---- command line ----------------------------------------------------------------


def load_folder(path, class_names, image_size):
    """The images of `path/<class>/<image>` (or an archive of such a folder) as
    `(images, labels)`, labelled in `class_names`' order.

    Raises:
        EvaluationError: If the folder is missing or unreadable, holds an
            unreadable image, or its class folders are not exactly `class_names`.
    """
    from training.data import DataError, resolve_data_dir
    from training.data.decoding import decode_files
    from training.data.sources import class_folders, list_class_files

    if not os.path.exists(path):
        raise EvaluationError(f"image folder not found: {os.fspath(path)!r}")
    try:
        root = resolve_data_dir(path)
        found = class_folders(Path(root))
    except DataError as e:
        raise EvaluationError(one_line(e)) from e
    if set(found) != set(class_names):
        missing = sorted(set(class_names) - set(found))
        extra = sorted(set(found) - set(class_names))
        raise EvaluationError(f"the folder's classes differ from the run's: missing {missing}, "
                              f"extra {extra} (expected {os.fspath(path)}/<class>/<image> "
                              f"for the classes {list(class_names)})")
    try:
        files, labels = list_class_files(Path(root), list(class_names))
    except DataError as e:
        raise EvaluationError(one_line(e)) from e
    images, labels, bad = decode_files(files, labels, image_size)
    if bad:
        raise EvaluationError(f"{len(bad)} unreadable or non-image file(s) in {os.fspath(path)} "
                              f"(e.g. {', '.join(os.path.relpath(b, root) for b in bad[:3])})")
    return images, labels


def _run_split(run_dir, run_config, image_size):
    """The held-out split a run validated on, recomputed from its `config.json`
    (`training.export.run_data`, which checks the run's image size first)."""
    from keras_googlenet.export import ExportError
    from training.export import run_data

    if run_config is None:
        raise EvaluationError(f"run folder {run_dir} has no config.json; pass --data-dir")
    try:
        _, _, x_val, y_val, class_names = run_data(run_dir, run_config, (image_size, image_size),
                                                   hint="pass --data-dir")
    except ExportError as e:
        raise EvaluationError(one_line(e)) from e
    return x_val, y_val, [str(c) for c in class_names]


def evaluate_path(path, *, data_dir=None, output_dir=None, tta_flip=None, batch_size=64):
    """`python -m training.evaluate`: evaluates a run folder or a `.keras` file.

    Args:
        path: A finished run folder (its `model.keras`, `labels.txt`,
            `config.json`) or a `.keras` file (a `labels.txt` beside it names
            its classes, else `data_dir`'s class folders do).
        data_dir: A folder of images `<class>/<image>` (or an archive of one);
            default: the run's held-out split.
        output_dir: Where the files go; default: the run folder for its
            held-out split, else `<run or model folder>/evaluation-<folder name>`.
        tta_flip: Flip TTA; default: the run's `--tta-flip` (off for a `.keras` file).
        batch_size: Images per prediction batch.

    Returns:
        `(report, output folder)`.

    Raises:
        EvaluationError: For bad input (one line).
    """
    from keras_googlenet.export import ExportError
    from training.export import load_source

    path = Path(path)
    if path.is_dir() and not (path / "model.keras").is_file():
        raise EvaluationError(f"run folder {path} has no model.keras: it is written when the "
                              "run finishes (run its training command again to finish it)")
    if not path.exists():
        raise EvaluationError(f"not found: {path} (expected a run folder or a .keras file)")
    try:
        src = load_source(path)
    except (ExportError, ValueError) as e:
        raise EvaluationError(one_line(e)) from e
    model, run_config, names = src.model, src.run_config, src.labels
    if names is None and path.is_file() and (path.parent / "labels.txt").is_file():
        names = (path.parent / "labels.txt").read_text(encoding="utf-8").splitlines()
    size = model.inputs[0].shape[1]
    if data_dir is None:
        if src.run_dir is None:
            raise EvaluationError(f"{path} is a model file, not a run folder: pass --data-dir")
        images, labels, split_names = _run_split(path, run_config, size)
        if names is not None and names != split_names:
            raise EvaluationError(f"the run's classes {split_names} differ from its labels.txt")
        names, source = split_names, f"held-out split of run {path.name}"
        out = Path(output_dir) if output_dir else path
    else:
        if names is None:
            from training.data import DataError, resolve_data_dir
            from training.data.sources import class_folders
            try:
                names = class_folders(Path(resolve_data_dir(data_dir)))
            except (DataError, OSError) as e:
                raise EvaluationError(one_line(e)) from e
        images, labels = load_folder(data_dir, names, size)
        source = f"image folder {os.fspath(data_dir)}"
        base = path if path.is_dir() else path.parent
        out = Path(output_dir) if output_dir else base / f"evaluation-{Path(data_dir).name}"
    if not len(images):
        raise EvaluationError(f"no images to evaluate in {source}")
    tta = bool(run_config and run_config.get("tta_flip")) if tta_flip is None else tta_flip
    report = evaluate(model, array_batches(images, labels, batch_size), names, out,
                      tta_flip=tta, source=source)
    return report, out


def build_parser():
    """The command line of `python -m training.evaluate`."""
    parser = OneLineParser(
        prog="python -m training.evaluate",
        description="Evaluate a finished training run (or a .keras model) on labelled images: "
        "top-1/top-5 accuracy, per-class accuracy, precision and recall, and the confusion "
        f"matrix ({EVALUATION_FILE}, {CONFUSION_FILE}).")
    parser.add_argument("model", metavar="RUN_DIR", help="a finished run folder (runs/NAME) or a "
                        ".keras file")
    parser.add_argument("--data-dir", metavar="FOLDER", help="images as FOLDER/<class>/<image> "
                        "(or an archive of such a folder), with exactly the run's classes "
                        "(default: the run's held-out split)")
    parser.add_argument("--output-dir", metavar="DIR", help="where the files go (default: the "
                        "run folder for its held-out split, else RUN_DIR/evaluation-<FOLDER name>)")
    parser.add_argument("--tta-flip", action=argparse.BooleanOptionalAction, default=None,
                        help="flip test-time augmentation (default: as the run was trained)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    add_framework_logs_flag(parser)
    return parser


def main(argv=None):
    """Command-line entry point; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        if args.batch_size < 1:
            raise UsageError(f"--batch-size must be 1 or more, not {args.batch_size}")
    except UsageError as e:
        print(f"error: {e} (see --help)", file=sys.stderr)
        return 2
    from keras_googlenet._internal.logs import import_backend

    import_backend(verbose=args.framework_logs)
    try:
        report, out = evaluate_path(args.model, data_dir=args.data_dir, output_dir=args.output_dir,
                                    tta_flip=args.tta_flip, batch_size=args.batch_size)
    except (EvaluationError, OSError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 1
    top5 = report.get(f"top{TOP_K}_accuracy")
    tta = ", flip TTA" if report["tta_flip"] else ""
    print(f"{report['num_images']} images ({report['source']}{tta}): top-1 "
          f"{report['top1_accuracy']:.4f}" + (f", top-{TOP_K} {top5:.4f}" if top5 is not None else "")
          + f"; wrote {out / EVALUATION_FILE} and {out / CONFUSION_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
