"""Makes the shipped `weights="cifar10"` from a finished training run, and measures it.

    python tools/ship_cifar10.py RUN_FOLDER [--output-json FILE]

1. Writes the run's final weights (backbone and main head; the auxiliary heads
   are left out) as float16 to `keras_googlenet/data/googlenet_cifar10_w05.npz`,
   the file `GoogLeNet(weights="cifar10")` loads.
2. Evaluates, on the run's whole held-out split (recomputed from its
   `config.json` exactly as the run made it), the run's own model in float32
   and `GoogLeNet(weights="cifar10")`: the difference is what float16 storage
   costs.
3. Records a fixed sample of 500 held-out images (50 per class, by file name
   in the archive) with the shipped model's accuracy on them, which
   `tests/test_cifar10_weights.py` checks against the installed package, and
   its logits for the first 10, which `tests/test_model.py` checks on every
   Keras backend.

The run must be a CIFAR-stem, width-0.5, 10-class run of `python -m training.cifar`
on an image folder or archive (the shipped entry's configuration).
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PER_CLASS = 50
PARITY_IMAGES = 10


def _accuracy(model, x, y):
    logits = model.predict(x.astype("float32"), batch_size=250, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


def _held_out_files(config):
    """The held-out split's file names (relative to the data root) and labels, in order."""
    from training.data.archives import resolve_data_dir
    from training.data.sources import class_folders, list_class_files
    from training.data.splits import stratified_split

    root = resolve_data_dir(config.data_dir, config.cache_dir)
    classes = class_folders(root / "train")
    files, labels = list_class_files(root / "train", classes)
    _, _, val_files, val_labels = stratified_split(files, labels, config.val_fraction, config.seed)
    return [os.path.relpath(f, root) for f in val_files], np.asarray(val_labels), classes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="the finished run folder (model.keras, config.json)")
    parser.add_argument("--output-json", default=str(
        REPO / "benchmarks" / "results" / "cifar10_w05" / "shipped_weights.json"))
    args = parser.parse_args(argv)

    import keras

    import keras_googlenet as kg
    from keras_googlenet import architecture, pretrained
    from keras_googlenet.utils import float32_model
    from training.config import TrainConfig
    from training.data import load_arrays

    run = Path(args.run)
    config = TrainConfig.load(run / "config.json")
    entry = pretrained.PRETRAINED_WEIGHTS["cifar10"]
    trained = float32_model(keras.saving.load_model(run / "model.keras", compile=False))
    trained_main = kg.inference_model(trained)  # the main head only, as shipped
    keras.config.set_dtype_policy("float32")

    arrays = {layer.name: [np.asarray(w) for w in layer.get_weights()]
              for layer in trained.layers
              if layer.weights and not (architecture.is_head_layer(layer.name)
                                        and layer.name != architecture.MAIN_HEAD)}
    shipped_path = REPO / "keras_googlenet" / entry["package_file"]
    pretrained.write_npz(shipped_path, arrays, dtype="float16")
    shipped = kg.GoogLeNet(weights="cifar10")

    _, _, x_val, y_val, classes = load_arrays(config)
    if list(classes) != kg.cifar10_class_names():
        sys.exit(f"error: the run's classes {classes} are not {kg.cifar10_class_names()}")
    float32_acc = _accuracy(trained_main, x_val, y_val)
    shipped_acc = _accuracy(shipped, x_val, y_val)

    files, labels, _ = _held_out_files(config)
    if not np.array_equal(labels, y_val):
        sys.exit("error: the recomputed held-out file list does not match the run's split")
    picked = np.concatenate([np.flatnonzero(labels == c)[:SAMPLE_PER_CLASS]
                             for c in range(len(classes))])
    sample_acc = _accuracy(shipped, x_val[picked], y_val[picked])
    # Logits of the first images, for the check that every backend computes the same.
    reference = shipped.predict(x_val[picked[:PARITY_IMAGES]].astype("float32"), verbose=0)

    record = {
        "command": "python tools/ship_cifar10.py " + " ".join(argv or sys.argv[1:]),
        "run": {"name": run.name, "precision": config.precision, "epochs": config.epochs,
                "data_dir": config.data_dir, "val_fraction": config.val_fraction,
                "seed": config.seed},
        "shipped_file": str(shipped_path.relative_to(REPO)),
        "shipped_file_bytes": shipped_path.stat().st_size,
        "shipped_dtype": "float16",
        "layers": len(arrays),
        "parameters": int(sum(a.size for values in arrays.values() for a in values)),
        "held_out": {
            "images": int(len(y_val)),
            "accuracy_run_float32": float32_acc,
            "accuracy_shipped_float16": shipped_acc,
            "float16_cost_points": round(100 * (float32_acc - shipped_acc), 4),
        },
        "sample": {
            "note": f"the first {SAMPLE_PER_CLASS} held-out images of each class, in file order",
            "files": [files[i] for i in picked],
            "labels": [int(labels[i]) for i in picked],
            "accuracy_shipped": sample_acc,
            "logits_first_images": np.round(reference, 5).tolist(),
            "logits_backend": keras.backend.backend(),
        },
    }
    os.makedirs(os.path.dirname(args.output_json), exist_ok=True)
    with open(args.output_json, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    print(json.dumps({k: v for k, v in record.items() if k != "sample"}, indent=1))
    print(f"500-image sample accuracy: {sample_acc:.4f}; wrote {args.output_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
