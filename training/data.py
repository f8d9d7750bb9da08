"""Training data: TFDS, image folders (or archives of them) and synthetic images.

Every source is decoded once into uint8 NHWC arrays in memory (`load_arrays`);
`build_datasets` then feeds them to `model.fit`, augmenting on the fly:

- with TensorFlow importable, through `tf.data` (shuffle, batch, augment in
  parallel, prefetch);
- without it (the JAX-only GPU setup), through a `keras.utils.PyDataset` that
  augments with numpy in worker threads.

Images stay raw RGB 0-255: GoogLeNet rescales inside the model. Labels are
one-hot (label smoothing needs them) and repeated for the three heads.

TensorFlow and TFDS are imported lazily, only on the paths that need them.
"""

import concurrent.futures
import dataclasses
import hashlib
import lzma
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

import keras
import numpy as np

#: Output heads of the three-head GoogLeNet, in output order.
HEADS = ("aux1", "aux2", "main")

#: Archive suffixes `resolve_data_dir` extracts.
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".zip")

#: Where TFDS would download from, probed before `download_and_prepare` so that
#: an offline machine fails in seconds instead of retrying for minutes.
_PROBE_TIMEOUT_S = 3.0


class DataError(ValueError):
    """Bad data input; the message is one line meant for the user."""


@dataclasses.dataclass
class Datasets:
    """What `build_datasets` returns.

    Attributes:
        train: Batches of `(images, {head: one-hot labels})` for `model.fit`,
            shuffled and augmented; a `tf.data.Dataset` or a `keras.utils.PyDataset`.
        val: The held-out split, batched, not augmented; batches may carry a
            third element, sample weights (see `build_datasets`).
        class_names: Class names in label (and model output) order.
        num_train: Number of training examples.
        num_val: Number of held-out examples.
        steps_per_epoch: Training batches per epoch (incomplete batches are dropped).
        val_source: Where the held-out split comes from, in words.
        pipeline: `"tf.data"` or `"numpy"`.
        skipped_files: Unreadable files skipped (with `skip_bad_images`).
    """

    train: object
    val: object
    class_names: list
    num_train: int
    num_val: int
    steps_per_epoch: int
    val_source: str
    pipeline: str
    skipped_files: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Arrays:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: list
    val_source: str
    skipped_files: list


# ---- public API ---------------------------------------------------------------


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
    a = _load(config)
    return a.x_train, a.y_train, a.x_val, a.y_val, a.class_names


def build_datasets(config, *, replicas=1):
    """Builds the training and held-out inputs for `model.fit`.

    Args:
        config: A resolved `TrainConfig`.
        replicas: Number of devices the batches are split over. With JAX data
            parallelism every batch must divide evenly, so the held-out split
            is then padded to a multiple of `replicas` with zero-weight
            examples (the validation batches then carry sample weights).

    Returns:
        A `Datasets`.

    Raises:
        DataError: If the data cannot be read or is too small for the batch size.
    """
    a = _load(config)
    num_train, num_val = len(a.x_train), len(a.x_val)
    if config.batch_size > num_train:
        raise DataError(
            f"--batch-size {config.batch_size} is larger than the {num_train} training "
            "examples; lower --batch-size"
        )
    if config.batch_size % replicas:
        raise DataError(
            f"--batch-size {config.batch_size} must be a multiple of the {replicas} devices"
        )
    x_val, y_val, w_val = a.x_val, a.y_val, None
    if num_val % replicas:
        pad = replicas - num_val % replicas
        x_val = np.concatenate([x_val, np.zeros((pad, *x_val.shape[1:]), x_val.dtype)])
        y_val = np.concatenate([y_val, np.zeros(pad, y_val.dtype)])
        w_val = np.concatenate([np.ones(num_val, "float32"), np.zeros(pad, "float32")])
    num_classes = len(a.class_names)
    if config.pipeline == "tf.data":
        train, val = _tf_datasets(config, a.x_train, a.y_train, x_val, y_val, w_val, num_classes)
    else:
        pad = config.pad if config.augment else None
        train = ArrayDataset(
            a.x_train, a.y_train, num_classes, config.batch_size,
            shuffle=True, pad=pad, seed=config.seed, drop_remainder=True,
        )
        val = ArrayDataset(x_val, y_val, num_classes, config.batch_size, sample_weight=w_val)
    return Datasets(
        train=train,
        val=val,
        class_names=a.class_names,
        num_train=num_train,
        num_val=num_val,
        steps_per_epoch=num_train // config.batch_size,
        val_source=a.val_source,
        pipeline=config.pipeline,
        skipped_files=a.skipped_files,
    )


def resolve_data_dir(path, cache_dir=None):
    """Turns a data folder or an archive of one into a folder holding `train/`.

    A folder is returned as is. A `.tar`, `.tar.gz`, `.tar.xz`, `.tar.bz2` or
    `.zip` archive is extracted once into a cache folder (`cache_dir`, else
    `$KERAS_GOOGLENET_CACHE`, else `~/.cache/keras_googlenet`) keyed by the
    archive's path, size and modification time; extraction goes to a temporary
    folder renamed into place, so a cached folder is always complete. Members
    that would land outside the extraction folder (`../x`, absolute paths,
    links pointing outside, device files) make the whole archive refused
    before anything is written. If the archive holds a single top folder that
    contains `train/`, that folder is returned.

    Args:
        path: A folder or an archive.
        cache_dir: Where archives are extracted.

    Returns:
        A `pathlib.Path`.

    Raises:
        DataError: If the path is missing, not a supported archive, corrupt or unsafe.
    """
    source = Path(path).expanduser()
    if not source.exists():
        raise DataError(f"data folder not found: {path}")
    if source.is_dir():
        return source
    if not source.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise DataError(
            f"--data-dir must be a folder or a {'/'.join(ARCHIVE_SUFFIXES)} archive; got {path}"
        )
    cache = Path(
        cache_dir or os.environ.get("KERAS_GOOGLENET_CACHE") or "~/.cache/keras_googlenet"
    ).expanduser() / "archives"
    info = source.stat()
    key = hashlib.sha256(
        f"{source.resolve()}|{info.st_size}|{info.st_mtime_ns}".encode()
    ).hexdigest()[:16]
    target = cache / f"{source.name}-{key}"
    if not target.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache))
        try:
            _extract(source, tmp)
            try:
                os.replace(tmp, target)
            except OSError:  # another process extracted it first
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    subdirs = [p for p in target.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not (target / "train").is_dir() and len(subdirs) == 1 and (subdirs[0] / "train").is_dir():
        return subdirs[0]
    return target


# ---- augmentation -------------------------------------------------------------


def augment_numpy(images, pad, rng):
    """Random pad-and-crop plus horizontal flip of a uint8 NHWC batch, in numpy.

    Each image is zero-padded by `pad` pixels on every side and cropped back to
    its size at a random offset (a shift of up to `pad` pixels), then flipped
    left-right with probability 1/2. Offsets and flips are drawn per image.

    Args:
        images: Array of shape `(n, h, w, c)`.
        pad: Padding in pixels; 0 disables the crop.
        rng: A `numpy.random.Generator`.

    Returns:
        A new array of the same shape and dtype.
    """
    n, h, w, _ = images.shape
    if pad:
        padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        rows = rng.integers(0, 2 * pad + 1, n)[:, None] + np.arange(h)
        cols = rng.integers(0, 2 * pad + 1, n)[:, None] + np.arange(w)
        images = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    else:
        images = images.copy()
    flip = rng.random(n) < 0.5
    images[flip] = images[flip, :, ::-1]
    return images


def augment_tf(images, pad):
    """`augment_numpy` in TensorFlow ops, for a batch inside `tf.data`.

    Hand-written rather than `keras.layers.RandomCrop`, which crops a whole
    batch at one offset; this draws one offset per image.
    """
    import tensorflow as tf

    shape = tf.shape(images)
    n, h, w = shape[0], shape[1], shape[2]
    if pad:
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        dy = tf.random.uniform([n], 0, 2 * pad + 1, tf.int32)
        dx = tf.random.uniform([n], 0, 2 * pad + 1, tf.int32)
        rows = dy[:, None] + tf.range(h)[None, :]
        cols = dx[:, None] + tf.range(w)[None, :]
        images = tf.gather(padded, rows, axis=1, batch_dims=1)
        images = tf.gather(images, cols, axis=2, batch_dims=1)
    flip = tf.random.uniform([n]) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


# ---- pipelines ----------------------------------------------------------------


class ArrayDataset(keras.utils.PyDataset):
    """Batches of in-memory arrays for `model.fit`, without TensorFlow.

    Yields `(images, {head: one-hot labels})` (plus sample weights when
    given), reshuffling and re-augmenting every epoch. Batches are built
    in worker threads (numpy releases the GIL for the copies).

    Args:
        x: uint8 images, `(n, h, w, 3)`.
        y: int labels, `(n,)`.
        num_classes: Width of the one-hot labels.
        batch_size: Examples per batch.
        shuffle: Reshuffle every epoch.
        pad: `None` for no augmentation, else the pad-and-crop padding in
            pixels (`augment_numpy`; 0 flips only).
        seed: Seed of the shuffles and augmentations.
        sample_weight: Optional per-example weights.
        drop_remainder: Drop the last incomplete batch.
        workers: Worker threads (default: up to 4).
    """

    def __init__(self, x, y, num_classes, batch_size, *, shuffle=False, pad=None,
                 seed=0, sample_weight=None, drop_remainder=False, workers=None):
        super().__init__(workers=workers or min(4, os.cpu_count() or 1),
                         use_multiprocessing=False)
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.num_classes, self.batch_size = num_classes, batch_size
        self.shuffle, self.pad, self.seed = shuffle, pad, seed
        self.drop_remainder = drop_remainder
        self._epoch = 0
        self._order = self._permutation()

    def _permutation(self):
        if not self.shuffle:
            return np.arange(len(self.x))
        return np.random.default_rng([self.seed, self._epoch]).permutation(len(self.x))

    def __len__(self):
        if self.drop_remainder:
            return len(self.x) // self.batch_size
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        idx = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        images = self.x[idx]
        if self.pad is not None:
            rng = np.random.default_rng([self.seed, self._epoch, index, 1])
            images = augment_numpy(images, self.pad, rng)
        onehot = np.eye(self.num_classes, dtype="float32")[self.y[idx]]
        targets = {head: onehot for head in HEADS}
        if self.sample_weight is None:
            return images, targets
        return images, targets, self.sample_weight[idx]

    def on_epoch_end(self):
        self._epoch += 1
        self._order = self._permutation()




def _tf_datasets(config, x_train, y_train, x_val, y_val, w_val, num_classes):
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    pad = config.pad

    def targets(y):
        onehot = tf.one_hot(y, num_classes)
        return {head: onehot for head in HEADS}

    def train_map(x, y):
        if config.augment:
            x = augment_tf(x, pad)
        return x, targets(y)

    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=config.seed, reshuffle_each_iteration=True)
        # Batch first, then augment whole batches: far cheaper than per image.
        .batch(config.batch_size, drop_remainder=True)
        .map(train_map, num_parallel_calls=autotune, deterministic=False)
        .prefetch(autotune)
    )
    if w_val is None:
        val = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(config.batch_size)
        val = val.map(lambda x, y: (x, targets(y)))
    else:
        val = tf.data.Dataset.from_tensor_slices((x_val, y_val, w_val)).batch(config.batch_size)
        val = val.map(lambda x, y, w: (x, targets(y), w))
    return train, val.prefetch(autotune)


# ---- loading ------------------------------------------------------------------


def _load(config):
    if config.data == "synthetic":
        arrays = _load_synthetic(config)
    elif config.data == "folder":
        arrays = _load_folder(config)
    elif config.data == "tfds":
        arrays = _load_tfds(config)
    else:
        raise DataError(f"unknown data source {config.data!r}")
    if len(arrays.x_train) == 0:
        raise DataError("the training split is empty")
    if len(arrays.x_val) == 0:
        raise DataError("the held-out split is empty; raise --val-fraction or add DIR/val")
    return arrays


def _load_synthetic(config):
    """Random images and labels of the configured shape, for throughput tests."""
    rng = np.random.default_rng(config.seed)
    size = config.image_size
    n_train = min(config.synthetic_examples, config.limit or config.synthetic_examples)
    n_val = max(1, n_train // 10)
    x = rng.integers(0, 256, (n_train + n_val, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n_train + n_val).astype("int32")
    return _Arrays(x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                   [f"class_{i}" for i in range(10)], "synthetic", [])


def _load_tfds(config):
    """TFDS `train`, split into training and a stratified `val_fraction` held out.

    The held-out split is carved out of `train`, never the official `test` split:
    it picks the best checkpoint, so using `test` would leak it into model
    selection, and its figures are validation accuracy, not test accuracy.
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

    def split_arrays(split):
        dataset = builder.as_dataset(split=split, as_supervised=True).batch(10000)
        batches = list(tfds.as_numpy(dataset))
        return (np.concatenate([b[0] for b in batches]),
                np.concatenate([b[1] for b in batches]).astype("int32"))

    x_train, y_train = split_arrays("train")
    x_train, y_train, x_val, y_val = _stratified_split(
        x_train, y_train, config.val_fraction, config.seed)
    source = f"{config.val_fraction:g} of TFDS {config.tfds_name} train (stratified)"
    x_train, y_train = _limit(x_train, y_train, config.limit, config.seed)
    x_val, y_val = _limit(x_val, y_val, config.limit, config.seed)
    x_train = _resize_all(_rgb(x_train), config.image_size)
    x_val = _resize_all(_rgb(x_val), config.image_size)
    return _Arrays(x_train, y_train, x_val, y_val, list(names), source, [])


def _load_folder(config):
    """`DIR/train/<class>/*` plus `DIR/val` or `DIR/test`, else a split of train."""
    root = resolve_data_dir(config.data_dir, config.cache_dir)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError(
            f"{config.data_dir} has no train/ folder (expected train/<class>/<image>)"
        )
    classes = _class_folders(train_dir)
    files, labels = _list_images(train_dir, classes)
    held_out = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    if held_out is not None:
        val_classes = _class_folders(held_out)
        if val_classes != classes:
            missing = sorted(set(classes) - set(val_classes))
            extra = sorted(set(val_classes) - set(classes))
            raise DataError(
                f"the class folders of {held_out.name}/ differ from train/: "
                f"missing {missing or 'none'}, extra {extra or 'none'}"
            )
        val_files, val_labels = _list_images(held_out, classes)
        source = f"{held_out.name}/ folder"
    else:
        if config.val_fraction <= 0:
            raise DataError(
                f"{config.data_dir} has no val/ or test/ folder and --val-fraction is 0: "
                "nothing to validate on"
            )
        files, labels, val_files, val_labels = _stratified_split(
            files, labels, config.val_fraction, config.seed)
        source = f"{config.val_fraction:g} of train/ (stratified, seed {config.seed})"
    files, labels = _limit(files, labels, config.limit, config.seed)
    val_files, val_labels = _limit(val_files, val_labels, config.limit, config.seed)
    x_train, y_train, bad_train = _decode_all(files, labels, config.image_size)
    x_val, y_val, bad_val = _decode_all(val_files, val_labels, config.image_size)
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
    return _Arrays(x_train, y_train, x_val, y_val, classes, source,
                   [os.path.relpath(b, root) for b in bad])


def _class_folders(split_dir):
    classes = sorted(
        p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not classes:
        raise DataError(f"{split_dir} has no class folders (expected {split_dir.name}/<class>/)")
    return classes


def _list_images(split_dir, classes):
    """Every non-hidden file under each class folder, with its label."""
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(
            str(p) for p in (split_dir / name).rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )
        if not found:
            raise DataError(f"class folder {split_dir.name}/{name} is empty")
        files += found
        labels += [label] * len(found)
    return np.array(files), np.array(labels, dtype="int32")


def _stratified_split(items, labels, fraction, seed):
    """Holds out `fraction` of every class (seeded); returns
    `(train items, train labels, held-out items, held-out labels)`."""
    rng = np.random.default_rng(seed)
    val, train = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(len(idx) * fraction))
        if fraction > 0 and len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)  # keep both sides non-empty
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    val, train = np.sort(np.concatenate(val)), np.sort(np.concatenate(train))
    return items[train], labels[train], items[val], labels[val]


def _limit(x, y, limit, seed):
    """The first `limit` examples of a seeded shuffle (folders are sorted by class)."""
    if limit is None or limit >= len(x):
        return x, y
    idx = np.sort(np.random.default_rng([seed, 7]).permutation(len(x))[:limit])
    return x[idx], y[idx]


def _decode_one(path, size):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (size, size):
                # Squashes non-square images; CIFAR-style data is square already.
                image = image.resize((size, size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None


def _decode_all(files, labels, size):
    """Decodes files in threads (PIL releases the GIL); returns arrays and bad paths."""
    workers = min(8, (os.cpu_count() or 1) * 2)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        decoded = list(pool.map(lambda f: _decode_one(f, size), files, chunksize=64))
    good = [i for i, image in enumerate(decoded) if image is not None]
    bad = [str(files[i]) for i, image in enumerate(decoded) if image is None]
    x = np.stack([decoded[i] for i in good]) if good else np.zeros((0, size, size, 3), np.uint8)
    return x, labels[good].astype("int32"), bad


def _rgb(images):
    if images.ndim == 4 and images.shape[-1] == 1:
        return np.repeat(images, 3, axis=-1)
    return images


def _resize_all(images, size):
    if images.shape[1:3] == (size, size):
        return images.astype(np.uint8, copy=False)
    from PIL import Image

    return np.stack([
        np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images
    ])


def _reachable(url):
    """Whether a TCP connection to the URL's host opens within a few seconds."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        socket.create_connection((parsed.hostname, port), timeout=_PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


# ---- archives -----------------------------------------------------------------


def _extract(archive, dest):
    """Extracts `archive` into the empty folder `dest`, refusing unsafe members."""
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            _extract_zip(archive, dest)
        else:
            _extract_tar(archive, dest)
    except DataError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, lzma.LZMAError, zlib.error, EOFError,
            OSError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot read archive {archive}: corrupt or truncated ({reason})") from e


def _refuse(archive, member, why):
    raise DataError(f"refusing to extract {archive}: member {member!r} {why}")


def _extract_tar(archive, dest):
    with tarfile.open(archive) as tar:
        members = tar.getmembers()  # reads the whole archive: corruption shows up here
        for m in members:
            if m.name.startswith("/") or PureWindowsPath(m.name).is_absolute():
                _refuse(archive, m.name, "has an absolute path")
            try:
                # The "data" filter (PEP 706) refuses paths and link targets that
                # leave `dest` and special files; check all before writing any.
                tarfile.data_filter(m, str(dest))
            except tarfile.FilterError as e:
                _refuse(archive, m.name, f"is unsafe ({type(e).__name__}: {e})")
        tar.extractall(dest, members=members, filter="data")


def _extract_zip(archive, dest):
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = info.filename
            posix = PurePosixPath(name.replace("\\", "/"))
            if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
                _refuse(archive, name, "has an absolute path")
            if ".." in posix.parts:
                _refuse(archive, name, "escapes the extraction folder")
            if stat.S_ISLNK(info.external_attr >> 16):
                _refuse(archive, name, "is a symbolic link")
        corrupt = zf.testzip()  # checks every member's CRC
        if corrupt is not None:
            raise DataError(f"cannot read archive {archive}: member {corrupt!r} is corrupt")
        zf.extractall(dest)
