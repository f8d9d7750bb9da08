"""Feeding in-memory arrays to `model.fit`: `build_datasets` and its two pipelines.

- With TensorFlow importable, `tf.data` (shuffle, batch, augment in parallel,
  prefetch);
- without it (the JAX-only GPU setup), `ArrayDataset`, a
  `keras.utils.PyDataset` that augments with numpy in worker threads.

Batches are `(images, one-hot labels)`, plus sample weights for a padded
held-out split. The data layer knows nothing of the model's heads: the
training recipe fans the labels out over the model's outputs
(`training.recipe.fan_out_labels`).
"""

import dataclasses
import os

import keras
import numpy as np

from training.data.augmentation import DRAWS, Augmentation
from training.data.errors import DataError
from training.data.sources import check_split_sizes, load
from training.distributed import gather


@dataclasses.dataclass
class Datasets:
    """What `build_datasets` returns.

    Attributes:
        train: Batches of `(images, one-hot labels)` for `model.fit`, shuffled
            and augmented; a `tf.data.Dataset` or a `keras.utils.PyDataset`.
        val: The held-out split, batched, not augmented; batches may carry a
            third element, sample weights (see `build_datasets`).
        class_names: Class names in label (and model output) order.
        num_train: Number of training examples.
        num_val: Number of held-out examples.
        steps_per_epoch: Training batches per epoch (incomplete batches are dropped).
        val_source: Where the held-out split comes from, in words.
        pipeline: `"tf.data"` or `"numpy"`.
        skipped_files: Unreadable files skipped (with `skip_bad_images`).
        share: `(training, held-out)` examples this process feeds (all of them
            in a single process; without the padding).
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
    share: tuple = None


def build_datasets(config, *, replicas=1, shard=(0, 1)):
    """Builds the training and held-out inputs for `model.fit`.

    Images stay raw RGB 0-255 (GoogLeNet rescales inside the model); labels
    are one-hot (label smoothing needs them).

    Args:
        config: A resolved `TrainConfig`.
        replicas: Number of devices the batches are split over (over all
            processes). With JAX data parallelism every batch must divide
            evenly, so the held-out split is then padded with zero-weight
            examples (the validation batches then carry sample weights).
        shard: `(index, count)`: this process's share of a run over `count`
            processes (`--strategy multi-worker`). The process then loads and
            decodes only examples `index::count` of each split (`load`), and
            feeds its training share (cut to the smallest share, so that every
            process takes the same number of steps) in batches of
            `config.batch_size // count`; Keras joins the processes' batches
            into the global batch of `config.batch_size`. Every held-out share
            is padded to the largest one: over all processes every held-out
            example is evaluated exactly once. The processes exchange the sizes
            of their shares (`training.distributed.gather`), so every process
            of the run must call this.

    Returns:
        A `Datasets` (`num_train`, `num_val`: over all processes).

    Raises:
        DataError: If the data cannot be read or is too small for the batch
            size (on every process, if any one process cannot read its share).
    """
    count = shard[1]
    if config.batch_size % replicas:
        raise DataError(
            f"--batch-size {config.batch_size} must be a multiple of the {replicas} devices"
        )
    if config.batch_size % count:
        raise DataError(f"--batch-size {config.batch_size} must be a multiple of the "
                        f"{count} processes")
    a, train_sizes, val_sizes = _load_share(config, shard)
    num_train, num_val = sum(train_sizes), sum(val_sizes)
    check_split_sizes(num_train, num_val)
    if config.batch_size > num_train:
        raise DataError(
            f"--batch-size {config.batch_size} is larger than the {num_train} training "
            "examples; lower --batch-size"
        )
    batch_size = config.batch_size // count
    x_train, y_train = a.x_train[:min(train_sizes)], a.y_train[:min(train_sizes)]
    # Every process evaluates as many held-out batches as the others, and every
    # batch splits evenly over this process's devices: pad with zero weights.
    local_devices = replicas // count
    padded = -(-max(val_sizes) // local_devices) * local_devices
    x_val, y_val, w_val = a.x_val, a.y_val, None
    if count > 1 or padded > len(x_val):
        pad = padded - len(x_val)
        x_val = np.concatenate([x_val, np.zeros((pad, *x_val.shape[1:]), x_val.dtype)])
        y_val = np.concatenate([y_val, np.zeros(pad, y_val.dtype)])
        w_val = np.concatenate([np.ones(len(a.x_val), "float32"), np.zeros(pad, "float32")])
    num_classes = len(a.class_names)
    if config.pipeline == "tf.data":
        train, val = _tf_datasets(config, batch_size, x_train, y_train, x_val, y_val, w_val,
                                  num_classes)
    else:
        train = ArrayDataset(
            x_train, y_train, num_classes, batch_size, shuffle=True,
            augmentation=Augmentation.of(config), seed=config.seed, drop_remainder=True,
        )
        val = ArrayDataset(x_val, y_val, num_classes, batch_size, sample_weight=w_val)
    return Datasets(
        train=train,
        val=val,
        class_names=a.class_names,
        num_train=num_train,
        num_val=num_val,
        steps_per_epoch=len(x_train) // batch_size,
        val_source=a.val_source,
        pipeline=config.pipeline,
        skipped_files=a.skipped_files,
        share=(len(x_train), len(a.x_val)),
    )


def _load_share(config, shard):
    """This process's share of the data (`load`), and the sizes of every
    process's training and held-out shares, in process order.

    A collective in a run over several processes: a process that cannot load
    its share tells the others, so that all of them stop with a `DataError`
    instead of waiting for it.
    """
    try:
        a = load(config, shard)
    except DataError:
        gather([-1, 0, 0])
        raise
    rows = gather([0, len(a.x_train), len(a.x_val)])
    failed = [str(p) for p, row in enumerate(rows) if row[0] < 0]
    if failed:
        raise DataError(f"process(es) {', '.join(failed)} could not load their share of the "
                        "data (their error says why)")
    return a, [row[1] for row in rows], [row[2] for row in rows]


class ArrayDataset(keras.utils.PyDataset):
    """Batches of in-memory arrays for `model.fit`, without TensorFlow.

    Yields `(images, one-hot labels)` (plus sample weights when given),
    reshuffling and re-augmenting every epoch. Batches are built in worker
    threads (numpy releases the GIL for the copies).

    Args:
        x: uint8 images, `(n, h, w, 3)`.
        y: int labels, `(n,)`.
        num_classes: Width of the one-hot labels.
        batch_size: Examples per batch.
        shuffle: Reshuffle every epoch.
        augmentation: The `Augmentation` of every batch (`None`: none).
        seed: Seed of the shuffles and augmentations (each batch's random
            numbers come from the seed, the epoch and the batch's index).
        sample_weight: Optional per-example weights.
        drop_remainder: Drop the last incomplete batch.
        workers: Worker threads (default: up to 4).
    """

    def __init__(self, x, y, num_classes, batch_size, *, shuffle=False, augmentation=None,
                 seed=0, sample_weight=None, drop_remainder=False, workers=None):
        super().__init__(workers=workers or min(4, os.cpu_count() or 1),
                         use_multiprocessing=False)
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.num_classes, self.batch_size = num_classes, batch_size
        self.shuffle, self.augmentation, self.seed = shuffle, augmentation, seed
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
        if self.augmentation is not None:
            rng = np.random.default_rng([self.seed, self._epoch, index, 1])
            images = self.augmentation(images, rng.random((len(idx), DRAWS), dtype=np.float32))
        onehot = np.eye(self.num_classes, dtype="float32")[self.y[idx]]
        if self.sample_weight is None:
            return images, onehot
        return images, onehot, self.sample_weight[idx]

    def on_epoch_end(self):
        self._epoch += 1
        self._order = self._permutation()


def _tf_datasets(config, batch_size, x_train, y_train, x_val, y_val, w_val, num_classes):
    import tensorflow as tf
    import tensorflow.experimental.numpy as tnp

    autotune = tf.data.AUTOTUNE
    augmentation = Augmentation.of(config)

    def train_map(x, y, seed):
        if augmentation is not None:
            draws = tf.random.stateless_uniform((batch_size, DRAWS), seed)
            x = augmentation(x, draws, xp=tnp)
        return x, tf.one_hot(y, num_classes)

    batches = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=config.seed, reshuffle_each_iteration=True)
        # Batch first, then augment whole batches: far cheaper than per image.
        .batch(batch_size, drop_remainder=True)
    )
    # One seed per batch, new every epoch, the same in a rerun of the seeded
    # run: the parallel map below may then run in any order.
    seeds = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True).batch(2)
    train = (
        tf.data.Dataset.zip(batches, seeds)
        .map(lambda batch, seed: train_map(*batch, seed), num_parallel_calls=autotune)
        .prefetch(autotune)
    )
    if w_val is None:
        val = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(batch_size)
        val = val.map(lambda x, y: (x, tf.one_hot(y, num_classes)))
    else:
        val = tf.data.Dataset.from_tensor_slices((x_val, y_val, w_val)).batch(batch_size)
        val = val.map(lambda x, y, w: (x, tf.one_hot(y, num_classes), w))
    return train, val.prefetch(autotune)
