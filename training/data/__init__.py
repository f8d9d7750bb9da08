"""Training data: TFDS, image folders (or archives of them) and synthetic images.

Every source is decoded once into uint8 NHWC arrays in memory (`load_arrays`);
`build_datasets` then feeds them to `model.fit`, augmenting on the fly. One
role per module:

- `sources`: the TFDS, folder and synthetic loaders (`load_arrays`), and
  `check_source`, a run's quick check of its folder or archive;
- `archives`: `resolve_data_dir`, safe extraction of archives into a cache;
- `decoding`: threaded decoding of file lists (`keras_googlenet._internal.images`);
- `splits`: the seeded stratified held-out split and `--limit`;
- `augmentation`: random pad-and-crop, flip and cutout, written once for both pipelines;
- `pipelines`: `build_datasets`, `tf.data` or `ArrayDataset` (`keras.utils.PyDataset`).

Batches are `(images, one-hot labels)`: the data layer does not know the
model's heads (`training.recipe.fan_out_labels` repeats the labels for them).
TensorFlow and TFDS are imported lazily, only on the paths that need them.
To add a data source, add a loader to `sources.py` and its name to
`training.config.DATA_SOURCES`.
"""

from training.data.archives import ARCHIVE_SUFFIXES, resolve_data_dir
from training.data.augmentation import Augmentation, augment
from training.data.errors import DataError
from training.data.pipelines import ArrayDataset, Datasets, build_datasets
from training.data.sources import check_source, load_arrays

__all__ = [
    "ARCHIVE_SUFFIXES",
    "ArrayDataset",
    "Augmentation",
    "DataError",
    "Datasets",
    "augment",
    "build_datasets",
    "check_source",
    "load_arrays",
    "resolve_data_dir",
]
