"""Where the examples come from: TFDS, an image folder (or archive) or synthetic images.

Every source is decoded once into uint8 NHWC arrays in memory, split into a
training and a held-out part (`load`); `load_arrays` is the public face.
In a run over several processes each one decodes only its share of both
parts (`load`'s `shard`): files and TFDS records are split and shared out
before anything is decoded. TFDS and TensorFlow are imported only when
`--data tfds` asks for them.
"""

import dataclasses
import os
import sys

import numpy as np

from keras_googlenet._internal.fileio import label_forbidden_characters
from keras_googlenet._internal.images import resize_images
from training.data.archives import resolve_data_dir
from training.data.decoding import decode_files
from training.data.errors import DataError
from training.data.splits import limit, stratified_split, take_share

#: How long the TFDS download host is probed before `download_and_prepare`, so
#: that an offline machine fails in seconds instead of retrying for minutes.
PROBE_TIMEOUT_S = 3.0

#: Classes of `--data synthetic`.
SYNTHETIC_CLASSES = 10


@dataclasses.dataclass
class Arrays:
    """A source decoded into memory (what `load` returns).

    Attributes:
        x_train, y_train, x_val, y_val: uint8 images and int32 labels.
        class_names: Class names in label order.
        val_source: Where the held-out split comes from, in words.
        skipped_files: Unreadable files skipped (with `skip_bad_images`).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: list
    val_source: str
    skipped_files: list


def load_arrays(config):
    """Decodes the run's data into memory.

    The split is a pure function of the configuration (source, `val_fraction`,
    `seed`, `limit`, `image_size`), so calling this again with a run's saved
    config returns exactly the held-out examples that run validated on.

    Args:
        config: A resolved `TrainConfig`.

    Returns:
        `(x_train, y_train, x_val, y_val, class_names)`: uint8 arrays of shape
        `(n, image_size, image_size, 3)`, int32 label vectors and the class names.

    Raises:
        DataError: If the data cannot be found or read.
    """
    a = load(config)
    return a.x_train, a.y_train, a.x_val, a.y_val, a.class_names


def load(config, shard=(0, 1)):
    """The configured source as `Arrays`; raises `DataError` if a split is empty.

    Args:
        config: A resolved `TrainConfig`.
        shard: `(index, count)`: decode only examples `index::count` of the
            training and of the held-out split (`take_share`), this process's
            share of a run over `count` processes. The split itself is the
            same for every `shard`: it is made before the shares are taken.
    """
    loaders = {"synthetic": _load_synthetic, "folder": _load_folder, "tfds": _load_tfds}
    if config.data not in loaders:
        raise DataError(f"unknown data source {config.data!r}")
    arrays = loaders[config.data](config, shard)
    check_class_count(arrays.class_names, config.data_dir or f"--data {config.data}")
    if shard[1] == 1:  # a share may be empty; build_datasets checks the sum of the shares
        check_split_sizes(len(arrays.x_train), len(arrays.x_val))
    return arrays


def check_split_sizes(num_train, num_val):
    """Raises DataError if the training or the held-out split is empty."""
    if num_train == 0:
        raise DataError("the training split is empty")
    if num_val == 0:
        raise DataError("the held-out split is empty; raise --val-fraction or add DIR/val")


def _load_synthetic(config, shard):
    """Random images and labels of the configured shape, for throughput tests
    (generated whole, so that every share is the same whatever the `shard`)."""
    rng = np.random.default_rng(config.seed)
    size = config.image_size
    n_train = min(config.synthetic_examples, config.limit or config.synthetic_examples)
    n_val = max(1, n_train // 10)
    x = rng.integers(0, 256, (n_train + n_val, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, SYNTHETIC_CLASSES, n_train + n_val).astype("int32")
    x_train, y_train = take_share(x[:n_train], y[:n_train], shard)
    x_val, y_val = take_share(x[n_train:], y[n_train:], shard)
    return Arrays(x_train, y_train, x_val, y_val,
                  [f"class_{i}" for i in range(SYNTHETIC_CLASSES)], "synthetic", [])


def _load_tfds(config, shard):
    """TFDS `train`, split into training and a stratified `val_fraction` held out.

    The held-out split is carved out of `train`, never the official `test` split:
    it picks the best checkpoint, so using `test` would leak it into model
    selection, and its figures are validation accuracy, not test accuracy.
    The records are read undecoded (TFDS's `SkipDecoding`), split on their
    labels, and only this process's share is decoded, with the dataset's own
    image feature.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(
            f"--data tfds needs tensorflow-datasets ({e}); train from an image folder "
            "with --data-dir DIR instead"
        ) from e
    try:
        builder = tfds.builder(config.tfds_name, data_dir=config.tfds_dir)
    except Exception as e:  # TFDS raises its own DatasetNotFoundError and others
        raise DataError(f"unknown TFDS dataset {config.tfds_name!r}: {e}".splitlines()[0]) from e
    if not builder.is_prepared():
        homepage = builder.info.homepage or "https://storage.googleapis.com"
        if not _reachable(homepage):
            raise DataError(
                f"TFDS dataset {config.tfds_name!r} is not downloaded (in {builder.data_dir}) "
                "and this machine cannot reach the internet; train from an image folder or "
                "archive with --data-dir DIR (e.g. --data-dir "
                "../shared/data/cifar10/train.tar.xz), or point --tfds-dir at a prepared TFDS "
                "folder"
            )
        builder.download_and_prepare()
    names = builder.info.features["label"].names
    image_feature = builder.info.features["image"]
    import tensorflow as tf

    undecoded = builder.as_dataset(split="train", as_supervised=True,
                                   decoders={"image": tfds.decode.SkipDecoding()})
    batches = list(tfds.as_numpy(undecoded.batch(10000)))
    encoded = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches]).astype("int32")
    encoded, labels, val_encoded, val_labels = stratified_split(
        encoded, labels, config.val_fraction, config.seed)
    source = f"{config.val_fraction:g} of TFDS {config.tfds_name} train (stratified)"

    def decoded_share(items, labels):
        items, labels = limit(items, labels, config.limit, config.seed)
        items, labels = take_share(items, labels, shard)
        images = tf.data.Dataset.from_tensor_slices(items).map(
            image_feature.decode_example, num_parallel_calls=tf.data.AUTOTUNE)
        x = np.stack(list(tfds.as_numpy(images))) if len(items) else np.zeros(
            (0, *image_feature.shape), np.uint8)
        return resize_images(x, config.image_size), labels

    x_train, y_train = decoded_share(encoded, labels)
    x_val, y_val = decoded_share(val_encoded, val_labels)
    return Arrays(x_train, y_train, x_val, y_val, list(names), source, [])


def check_source(config):
    """Raises `DataError` now if `--data-dir` cannot be a dataset.

    The checks that need no decoding: an archive is extracted (into its cache,
    where the run finds it again), then `train/` and its class folders are
    checked. `training.trainer.train` calls it before anything slow (the
    precision measurement), so bad data stops a run at once. TFDS and synthetic
    data are checked when they load.

    Args:
        config: A resolved `TrainConfig`.
    """
    if config.data == "folder":
        _folder_classes(config)


def _folder_classes(config):
    """`(root, train_dir, classes)` of `--data-dir`, its archive extracted, train/ checked."""
    root = resolve_data_dir(config.data_dir, config.cache_dir,
                            max_extract_mb=config.max_extract_mb,
                            max_extract_ratio=config.max_extract_ratio)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError(
            f"{config.data_dir} has no train/ folder (expected train/<class>/<image>)"
        )
    classes = class_folders(train_dir)
    check_class_count(classes, train_dir)
    return root, train_dir, classes


def _load_folder(config, shard):
    """`DIR/train/<class>/*` plus `DIR/val` or `DIR/test`, else a split of train."""
    root, train_dir, classes = _folder_classes(config)
    files, labels = list_class_files(train_dir, classes)
    held_out = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    if held_out is not None:
        val_classes = class_folders(held_out)
        if val_classes != classes:
            missing = sorted(set(classes) - set(val_classes))
            extra = sorted(set(val_classes) - set(classes))
            raise DataError(
                f"the class folders of {held_out.name}/ differ from train/: "
                f"missing {missing or 'none'}, extra {extra or 'none'}"
            )
        val_files, val_labels = list_class_files(held_out, classes)
        source = f"{held_out.name}/ folder"
    else:
        if config.val_fraction <= 0:
            raise DataError(
                f"{config.data_dir} has no val/ or test/ folder and --val-fraction is 0: "
                "nothing to validate on"
            )
        files, labels, val_files, val_labels = stratified_split(
            files, labels, config.val_fraction, config.seed)
        source = f"{config.val_fraction:g} of train/ (stratified, seed {config.seed})"
    files, labels = take_share(*limit(files, labels, config.limit, config.seed), shard)
    val_files, val_labels = take_share(
        *limit(val_files, val_labels, config.limit, config.seed), shard)
    x_train, y_train, bad_train = decode_files(files, labels, config.image_size)
    x_val, y_val, bad_val = decode_files(val_files, val_labels, config.image_size)
    bad = bad_train + bad_val
    if bad:
        examples = ", ".join(os.path.relpath(b, root) for b in bad[:3])
        if not config.skip_bad_images:
            raise DataError(
                f"{len(bad)} unreadable or non-image file(s) in {config.data_dir} "
                f"(e.g. {examples}); fix them or pass --skip-bad-images"
            )
        print(f"warning: skipped {len(bad)} unreadable or non-image file(s) (e.g. {examples})",
              file=sys.stderr)
    return Arrays(x_train, y_train, x_val, y_val, classes, source,
                  [os.path.relpath(b, root) for b in bad])


def class_folders(split_dir):
    """Sorted names of the non-hidden sub-folders of `split_dir` (the classes).

    Raises:
        DataError: If there are none, or a name holds a control or format
            character (a newline, a tab, U+202E, ...:
            `keras_googlenet._internal.fileio.label_forbidden_characters`): such names cannot be written in the run's
            label files, so they are refused before anything is trained. Also
            if a class folder is a link to `split_dir`, a folder above it, or
            another folder inside it: its images would be every class's (or
            another class's) under a label of their own.
    """
    classes = sorted(
        p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not classes:
        raise DataError(f"{split_dir} has no class folders (expected {split_dir.name}/<class>/)")
    split = split_dir.resolve()
    for name in classes:
        if label_forbidden_characters(name):
            raise DataError(f"class folder {name!r} in {split_dir} has a control character in "
                            "its name; rename it")
        folder = split_dir / name
        target = folder.resolve()
        if folder.is_symlink() and (split.is_relative_to(target) or target.is_relative_to(split)):
            what = ("itself" if target == split else "a folder inside it"
                    if target.is_relative_to(split) else "a folder holding it")
            raise DataError(
                f"class folder {split_dir.name}/{name} is a link to {target} ({split_dir.name}/ "
                f"{what}): its images would be other classes' under the label {name!r}; a class "
                "folder must hold its own images (remove the link)")
    return classes


def check_class_count(class_names, where):
    """Raises DataError unless there are at least two classes (one gives a useless 100%)."""
    if len(class_names) < 2:
        raise DataError(f"{where} has {len(class_names)} class(es) {list(class_names)}; a "
                        "classifier needs at least two (one folder per class)")


def list_class_files(split_dir, classes):
    """Every non-hidden file under each class folder, with its label.

    Not only image extensions: a stray file is decoded, found unreadable, and
    reported (or skipped with `--skip-bad-images`) rather than silently ignored;
    so is what is not a regular file (a FIFO, a device, a broken link), which
    the decoder refuses without reading it.

    Returns:
        `(files, labels)`: numpy arrays of paths and int32 labels.
    """
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(
            str(p) for p in (split_dir / name).rglob("*")
            if not p.is_dir() and not p.name.startswith(".")
        )
        if not found:
            raise DataError(f"class folder {split_dir.name}/{name} is empty")
        files += found
        labels += [label] * len(found)
    return np.array(files), np.array(labels, dtype="int32")


def _reachable(url):
    """Whether a TCP connection to the URL's host opens within a few seconds."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        socket.create_connection((parsed.hostname, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True
