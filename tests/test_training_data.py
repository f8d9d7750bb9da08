"""training.data: sources, splits, archives, bad inputs, augmentation, pipelines."""

import os
import socket
import tarfile
import zipfile

import keras
import numpy as np
import pytest
from training_helpers import CLASSES, make_archive, make_image_folder, tar_with

from keras_googlenet import HEADS
from training.config import TrainConfig
from training.data import (
    Augmentation,
    DataError,
    augment,
    build_datasets,
    load_arrays,
    resolve_data_dir,
)
from training.data.augmentation import DRAWS
from training.recipe import fan_out_datasets


def folder_config(data_dir, tmp_path, **fields):
    fields = {"image_size": 16, "val_fraction": 0.2, "batch_size": 4, **fields}
    config = TrainConfig(data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"), **fields)
    return config.resolve()


@pytest.fixture
def folder(tmp_path):
    return make_image_folder(tmp_path / "data", per_class=10)


# ---- folders ------------------------------------------------------------------


def test_folder_split_is_stratified_seeded_and_reproducible(folder, tmp_path):
    x_train, y_train, x_val, y_val, names = load_arrays(folder_config(folder, tmp_path))
    assert names == list(CLASSES)
    assert x_train.shape == (24, 16, 16, 3) and x_val.shape == (6, 16, 16, 3)  # resized from 20
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int32
    assert np.bincount(y_val).tolist() == [2, 2, 2]  # 20% of every class
    # Images keep their class colour: the class's channel dominates.
    assert (x_val.mean(axis=(1, 2)).argmax(axis=1) == y_val).all()
    # The same config gives the same split (what the export helper relies on) ...
    again = load_arrays(folder_config(folder, tmp_path))
    assert np.array_equal(again[2], x_val) and np.array_equal(again[0], x_train)
    # ... and another seed another one.
    other = load_arrays(folder_config(folder, tmp_path, seed=1))
    assert not np.array_equal(other[2], x_val)


def test_limit_takes_a_seeded_sample_of_each_split(folder, tmp_path):
    x_train, y_train, x_val, y_val, _ = load_arrays(folder_config(folder, tmp_path, limit=5))
    assert len(x_train) == 5 and len(x_val) == 5
    # Not simply the first files (which would all be "cat").
    assert len(set(y_train.tolist())) > 1


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_val_or_test_folder_is_the_held_out_split(folder, tmp_path, split):
    make_image_folder(folder, split=split, per_class=3, seed=1)
    config = folder_config(folder, tmp_path)
    x_train, _, x_val, y_val, _ = load_arrays(config)
    assert len(x_train) == 30 and len(x_val) == 9
    assert build_datasets(config).val_source == f"{split}/ folder"


def test_held_out_classes_must_match_train(folder, tmp_path):
    make_image_folder(folder, split="val", classes=("cat", "dog", "horse"), per_class=2)
    message = r"differ from train/: missing \['frog'\], extra \['horse'\]"
    with pytest.raises(DataError, match=message):
        load_arrays(folder_config(folder, tmp_path))


@pytest.mark.parametrize(
    "layout, message",
    [
        ("missing", "data folder not found"),
        ("no_train", "has no train/ folder"),
        ("no_classes", "has no class folders"),
        ("empty_class", "class folder train/dog is empty"),
    ],
)
def test_missing_or_empty_folders_are_reported(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout == "no_train":
        root.mkdir()
    elif layout == "no_classes":
        (root / "train").mkdir(parents=True)
    elif layout == "empty_class":
        make_image_folder(root, classes=("cat",), per_class=3)
        (root / "train" / "dog").mkdir()
    with pytest.raises(DataError, match=message):
        load_arrays(folder_config(root, tmp_path))


def test_unreadable_files_stop_the_run_or_are_skipped_and_counted(folder, tmp_path):
    (folder / "train" / "dog" / "notes.txt").write_text("not an image")
    (folder / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (folder / "train" / "cat" / ".DS_Store").write_bytes(b"hidden files are ignored")
    with pytest.raises(DataError, match=r"2 unreadable or non-image file\(s\).*--skip-bad-images"):
        load_arrays(folder_config(folder, tmp_path, limit=None))
    data = build_datasets(folder_config(folder, tmp_path, skip_bad_images=True))
    assert sorted(os.path.basename(f) for f in data.skipped_files) == ["broken.jpg", "notes.txt"]
    assert data.num_train + data.num_val == 30


# ---- archives -----------------------------------------------------------------


@pytest.mark.parametrize("name, top", [("d.tar", None), ("d.tar.xz", None), ("d.zip", None),
                                       ("d.tar.xz", "cifar"), ("d.zip", "cifar")])
def test_archives_give_the_same_data_as_the_folder(folder, tmp_path, name, top):
    archive = make_archive(folder, tmp_path / name, top=top)
    expected = load_arrays(folder_config(folder, tmp_path))
    got = load_arrays(folder_config(archive, tmp_path))
    for a, b in zip(expected, got):
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
    # Extracted once into the cache, then reused.
    cached = list((tmp_path / "cache" / "archives").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith(name)
    mtime = cached[0].stat().st_mtime_ns
    assert resolve_data_dir(archive, tmp_path / "cache").is_relative_to(cached[0])
    assert cached[0].stat().st_mtime_ns == mtime


def _unsafe_tar(path, kind):
    good = tarfile.TarInfo("train/cat/0.txt")
    members = [(good, b"ok")]
    if kind == "dotdot":
        members.append((tarfile.TarInfo("../evil.txt"), b"evil"))
    elif kind == "absolute":
        members.append((tarfile.TarInfo(str(path.parent / "abs_evil.txt")), b"evil"))
    elif kind == "symlink":
        link = tarfile.TarInfo("train/cat/link")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../outside"
        members.append((link, None))
    elif kind == "hardlink":
        link = tarfile.TarInfo("train/cat/hard")
        link.type, link.linkname = tarfile.LNKTYPE, "../../../etc/passwd"
        members.append((link, None))
    return tar_with(path, members)


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "zip_dotdot",
                                  "zip_absolute"])
def test_archives_with_escaping_members_are_refused(tmp_path, kind):
    work = tmp_path / "work"
    work.mkdir()
    if kind.startswith("zip"):
        archive = work / "bad.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("train/cat/0.txt", b"ok")
            zf.writestr(zipfile.ZipInfo("../evil.txt" if kind == "zip_dotdot" else "/abs_evil.txt"),
                        b"evil")
    else:
        archive = _unsafe_tar(work / "bad.tar", kind)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(DataError, match="refusing to extract"):
        resolve_data_dir(archive, tmp_path / "cache")
    after = sorted(p.name for p in tmp_path.rglob("*"))
    # Nothing extracted anywhere (the cache folder itself may now exist, empty).
    assert {p for p in after if p not in before} <= {"cache", "archives"}
    assert not list((tmp_path / "cache" / "archives").iterdir())
    assert not (tmp_path / "evil.txt").exists() and not (work / "abs_evil.txt").exists()


@pytest.mark.parametrize("name", ["bad.tar.xz", "bad.tar", "bad.zip", "truncated.tar.xz"])
def test_corrupt_archives_are_reported(folder, tmp_path, name):
    archive = tmp_path / name
    if name.startswith("truncated"):
        data = make_archive(folder, tmp_path / "full.tar.xz").read_bytes()
        archive.write_bytes(data[: len(data) // 2])
    else:
        archive.write_bytes(os.urandom(2048))
    with pytest.raises(DataError, match=f"cannot read archive .*{name}"):
        resolve_data_dir(archive, tmp_path / "cache")
    assert not list((tmp_path / "cache" / "archives").iterdir())


def test_unsupported_file_is_not_taken_for_an_archive(tmp_path):
    (tmp_path / "data.rar").write_bytes(b"x")
    with pytest.raises(DataError, match="must be a folder or a"):
        resolve_data_dir(tmp_path / "data.rar", tmp_path / "cache")


# ---- augmentation -------------------------------------------------------------
# `augment` is written once and run with numpy (the numpy pipeline) and with
# tf.experimental.numpy inside tf.data: every property is checked in both.

XP = ["numpy", "tf.data"]
VALUE = 200  # the value of every pixel of the cutout test images: cutout's 0 stands out


def _augment(xp, images, draws, pad, cutout=0):
    """`augment` as the pipeline `xp` runs it: numpy, or a `tf.data` map (graph mode)."""
    if xp == "numpy":
        return augment(images, draws, pad, cutout)
    import tensorflow as tf
    import tensorflow.experimental.numpy as tnp

    dataset = tf.data.Dataset.from_tensors((images, draws))
    dataset = dataset.map(lambda x, d: augment(x, d, pad, cutout, xp=tnp))
    return next(dataset.as_numpy_iterator())


def _draws(n, seed=1):
    return np.random.default_rng(seed).random((n, DRAWS), dtype=np.float32)


def _reference(images, draws, pad, cutout):
    """What `augment` must return, one image at a time in plain numpy."""
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = []
    for image, (u_row, u_col, u_flip, u_y, u_x) in zip(padded, draws):
        dy, dx = int(u_row * (2 * pad + 1)), int(u_col * (2 * pad + 1))
        image = image[dy:dy + h, dx:dx + w]
        image = image[:, ::-1].copy() if u_flip >= 0.5 else image.copy()
        if cutout:
            top, left = int(u_y * h) - cutout // 2, int(u_x * w) - cutout // 2
            image[max(top, 0):max(top + cutout, 0), max(left, 0):max(left + cutout, 0)] = 0
        out.append(image)
    return np.stack(out)


def _crop(image, dy, dx, size, flip):
    crop = image[dy:dy + size, dx:dx + size]
    return crop[:, ::-1] if flip else crop


def _check_crops_and_flips(images, out, pad):
    """Every output is a crop of the zero-padded input, possibly flipped."""
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    size = images.shape[1]
    offsets, flips = set(), set()
    for src, dst in zip(padded, out):
        found = [
            (dy, dx, flip)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for flip in (False, True)
            if np.array_equal(_crop(src, dy, dx, size, flip), dst)
        ]
        assert found, "an output is not a (flipped) crop of its padded input"
        offsets.add(found[0][:2])
        flips.add(found[0][2])
    assert len(offsets) > 5 and flips == {False, True}  # offsets and flips vary per image


def _assert_cutout(original, augmented, size):
    """Every image differs from `original` exactly on one clipped size x size square of zeros."""
    h, w = original.shape[1:3]
    full = 0
    for before, after in zip(original, augmented):
        zero = (after == 0).all(axis=-1)
        rows, cols = np.flatnonzero(zero.any(axis=1)), np.flatnonzero(zero.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        box = np.zeros_like(zero)
        box[r0:r1, c0:c1] = True
        assert (zero == box).all(), "the zeroed pixels are not one rectangle"
        # A side is shorter than `size` only where the square was clipped at the border.
        assert r1 - r0 == size or r0 == 0 or r1 == h
        assert c1 - c0 == size or c0 == 0 or c1 == w
        assert r1 - r0 <= size and c1 - c0 <= size
        assert (after[~zero] == before[~zero]).all()  # nothing else changed
        full += (r1 - r0, c1 - c0) == (size, size)
    assert full > len(original) // 4  # most squares lie inside a 16x16 image


@pytest.mark.parametrize("xp", XP)
def test_augmentation_is_a_random_pad_crop_and_flip(xp):
    images = np.random.default_rng(0).integers(1, 256, (48, 8, 8, 3), dtype=np.uint8)
    out = _augment(xp, images, _draws(48), 2)
    assert out.shape == images.shape and out.dtype == np.uint8
    _check_crops_and_flips(images, out, 2)


@pytest.mark.parametrize("xp", XP)
@pytest.mark.parametrize("pad, cutout", [(0, 0), (2, 0), (0, 5), (4, 8), (3, 16)])
def test_augmentation_is_the_per_image_reference_in_both_pipelines(xp, pad, cutout):
    images = np.random.default_rng(0).integers(0, 256, (32, 16, 12, 3), dtype=np.uint8)
    draws = _draws(32)
    draws[0] = [0.0, 0.0, 0.0, 0.0, 0.0]  # the extremes: top-left shift and square
    draws[1] = [np.nextafter(np.float32(1), np.float32(0))] * DRAWS  # bottom-right, flipped
    np.testing.assert_array_equal(_augment(xp, images, draws, pad, cutout),
                                  _reference(images, draws, pad, cutout))


@pytest.mark.parametrize("xp", XP)
def test_flip_really_flips_and_no_shift_no_flip_no_cutout_is_the_identity(xp):
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    centre = (4 + 0.5) / 9  # the middle of the 9 offsets of pad 4: no shift
    keep = np.full((4, DRAWS), centre, np.float32)
    keep[:, 2] = 0.25  # below 1/2: not flipped
    np.testing.assert_array_equal(_augment(xp, images, keep, 4), images)
    keep[:, 2] = 0.75
    np.testing.assert_array_equal(_augment(xp, images, keep, 4), images[:, :, ::-1])


@pytest.mark.parametrize("xp", XP)
def test_cutout_zeroes_one_square_clipped_at_the_border(xp):
    images = np.full((64, 16, 16, 3), VALUE, np.uint8)
    _assert_cutout(images, _augment(xp, images, _draws(64), 0, cutout=6), 6)


@pytest.mark.parametrize("xp", XP)
@pytest.mark.parametrize("centre, size, box", [(8, 8, (4, 12)), (1, 8, (0, 5)), (31, 8, (27, 32)),
                                               (5, 3, (4, 7))])
def test_cutout_square_is_centred_on_its_pixel_and_clipped(xp, centre, size, box):
    images = np.full((1, 32, 32, 3), VALUE, np.uint8)
    draws = np.array([[0.0, 0.0, 0.0, (centre + 0.5) / 32, (centre + 0.5) / 32]], np.float32)
    zero = (_augment(xp, images, draws, 0, cutout=size)[0] == 0).all(axis=-1)
    expected = np.zeros((32, 32), bool)
    expected[box[0]:box[1], box[0]:box[1]] = True
    np.testing.assert_array_equal(zero, expected)


def test_augmentation_needs_a_known_batch_shape():
    import tensorflow as tf
    import tensorflow.experimental.numpy as tnp

    spec = tf.TensorSpec((None, 8, 8, 3), tf.uint8)
    with pytest.raises(ValueError, match=r"known shape; got \(None, 8, 8, 3\)"):
        tf.function(lambda x: augment(x, tf.zeros((1, DRAWS)), 2, xp=tnp)).get_concrete_function(
            spec)


def test_augmentation_off_is_none_and_on_reads_pad_and_cutout():
    assert Augmentation.of(TrainConfig(augment=False)) is None
    assert Augmentation.of(TrainConfig(pad=2, cutout=8)) == Augmentation(pad=2, cutout=8)


@pytest.mark.parametrize("pipeline", ["tf.data", "numpy"])
def test_no_augment_feeds_the_training_images_unchanged(folder, tmp_path, pipeline):
    config = folder_config(folder, tmp_path, pipeline=pipeline, augment=False, batch_size=4)
    x_train = load_arrays(config)[0]
    fed = np.concatenate([np.asarray(b[0]) for b in _batches(build_datasets(config).train)])
    assert sorted(x.tobytes() for x in fed) == sorted(x.tobytes() for x in x_train)


def _epochs(config, epochs=2):
    """Two epochs of training images from a fresh `build_datasets`, seeded as a run seeds."""
    keras.utils.set_random_seed(config.seed)
    train = build_datasets(config).train
    out = []
    for _ in range(epochs):
        out.append(np.concatenate([np.asarray(b[0]) for b in _batches(train)]))
        if not hasattr(train, "as_numpy_iterator"):
            train.on_epoch_end()  # what model.fit calls
    return out


@pytest.mark.parametrize("pipeline", ["tf.data", "numpy"])
def test_a_seeded_run_repeats_its_augmented_batches(folder, tmp_path, pipeline):
    config = folder_config(folder, tmp_path, pipeline=pipeline, cutout=4, seed=3)
    first, second = _epochs(config)
    again = _epochs(config)
    np.testing.assert_array_equal(first, again[0])
    np.testing.assert_array_equal(second, again[1])
    assert not np.array_equal(first, second)  # a new shuffle and new draws every epoch
    other = _epochs(folder_config(folder, tmp_path, pipeline=pipeline, cutout=4, seed=4))
    assert not np.array_equal(first, other[0])


# ---- pipelines ----------------------------------------------------------------


@pytest.mark.parametrize("pipeline", ["tf.data", "numpy"])
def test_pipelines_yield_augmented_batches_with_one_hot_labels_per_head(folder, tmp_path, pipeline):
    config = folder_config(folder, tmp_path, pipeline=pipeline, batch_size=5)
    data = fan_out_datasets(build_datasets(config), HEADS)
    assert (data.num_train, data.num_val, data.steps_per_epoch) == (24, 6, 4)
    assert data.pipeline == pipeline
    train_batches = _batches(data.train)
    assert len(train_batches) == 4  # the incomplete batch is dropped
    x, y = train_batches[0]
    x = np.asarray(x)
    assert x.shape == (5, 16, 16, 3) and x.dtype == np.uint8
    assert set(y) == set(HEADS)
    for head in HEADS:
        labels = np.asarray(y[head])
        assert labels.shape == (5, 3) and (labels.sum(axis=1) == 1).all()
    # Validation: every held-out example once, in order, not augmented.
    _, _, x_val, y_val, _ = load_arrays(config)
    val = list(_batches(data.val))
    assert np.array_equal(np.concatenate([np.asarray(b[0]) for b in val]), x_val)
    assert np.array_equal(
        np.concatenate([np.asarray(b[1]["main"]) for b in val]).argmax(1), y_val)


@pytest.mark.parametrize("pipeline", ["tf.data", "numpy"])
def test_pipelines_yield_one_label_per_image_knowing_no_heads(folder, tmp_path, pipeline):
    config = folder_config(folder, tmp_path, pipeline=pipeline, batch_size=5)
    data = build_datasets(config)
    x, y = _batches(data.train)[0]
    assert np.asarray(x).shape == (5, 16, 16, 3)
    labels = np.asarray(y)
    assert labels.shape == (5, 3) and (labels.sum(axis=1) == 1).all()
    # The fan-out keeps the sample weights of a padded held-out split.
    config = folder_config(folder, tmp_path, pipeline=pipeline, batch_size=4)
    padded = fan_out_datasets(build_datasets(config, replicas=4), HEADS)
    batches = list(_batches(padded.val))
    assert all(len(b) == 3 and set(b[1]) == set(HEADS) for b in batches)
    assert np.concatenate([np.asarray(b[2]) for b in batches]).tolist() == [1.0] * 6 + [0.0] * 2


@pytest.mark.parametrize("pipeline", ["tf.data", "numpy"])
def test_held_out_split_is_padded_with_zero_weights_for_multiple_devices(
        folder, tmp_path, pipeline):
    config = folder_config(folder, tmp_path, pipeline=pipeline, batch_size=4, val_fraction=0.3)
    data = build_datasets(config, replicas=4)
    assert data.num_val == 9
    batches = list(_batches(data.val))
    assert all(len(b) == 3 and len(b[0]) % 4 == 0 for b in batches)
    weights = np.concatenate([np.asarray(b[2]) for b in batches])
    assert weights.tolist() == [1.0] * 9 + [0.0] * 3


def test_batch_size_larger_than_the_data_is_refused(folder, tmp_path):
    with pytest.raises(DataError, match="--batch-size 64 is larger than the 24 training examples"):
        build_datasets(folder_config(folder, tmp_path, batch_size=64))


def test_synthetic_data_has_the_configured_shape():
    config = TrainConfig(data="synthetic", synthetic_examples=50, image_size=24).resolve()
    x_train, y_train, x_val, y_val, names = load_arrays(config)
    assert x_train.shape == (50, 24, 24, 3) and x_val.shape == (5, 24, 24, 3)
    assert len(names) == 10 and y_train.max() < 10


def _batches(dataset):
    if hasattr(dataset, "as_numpy_iterator"):
        return list(dataset.as_numpy_iterator())
    return [dataset[i] for i in range(len(dataset))]


# ---- TFDS ---------------------------------------------------------------------


def test_tfds_cifar10_under_mock_data(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    # mock_data makes download_and_prepare a no-op; pretend the network is up so
    # that the offline check lets it through.
    monkeypatch.setattr("training.data.sources._reachable", lambda url: True)
    config = TrainConfig(data="tfds", tfds_dir=str(tmp_path), image_size=32, limit=20,
                         batch_size=8, val_fraction=0.5).resolve()
    with tfds.testing.mock_data(num_examples=60):
        x_train, y_train, x_val, y_val, names = load_arrays(config)
        data = build_datasets(config)
    assert x_train.shape == (20, 32, 32, 3) and x_val.shape == (20, 32, 32, 3)
    assert x_train.dtype == np.uint8 and y_train.max() < 10
    # (Without the downloaded metadata TFDS names CIFAR-10's classes "0" ... "9".)
    assert len(names) == 10
    # The held-out split is carved out of train (never the official test split),
    # disjoint from the training images.
    assert data.val_source == "0.5 of TFDS cifar10 train (stratified)"
    assert not {x.tobytes() for x in x_train} & {x.tobytes() for x in x_val}


def test_tfds_offline_fails_at_once_naming_data_dir(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
    config = TrainConfig(data="tfds", tfds_dir=str(tmp_path / "tfds")).resolve()
    with pytest.raises(DataError, match="--data-dir DIR"):
        load_arrays(config)
