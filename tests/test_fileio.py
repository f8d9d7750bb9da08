"""The one atomic-write module, the environment probe and the image decoder."""

import errno
import os
import stat

import numpy as np
import pytest

from keras_googlenet._internal import environment, fileio, images


@pytest.fixture
def umask():
    """Sets the process umask for one test and restores it."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_replaces_and_a_failed_write_keeps_the_old_content(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    fileio.atomic_write_text(path, "one")
    assert path.read_text() == "one"
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "one"
    assert os.listdir(path.parent) == ["a.txt"]  # no temporary left


def test_a_write_error_names_the_file_and_keeps_the_old_content(tmp_path):
    path = tmp_path / "a.txt"
    fileio.atomic_write_text(path, "one")
    with pytest.raises(OSError, match="No space left on device") as raised:
        with fileio.atomic_path(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a failed write
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(path)
    assert path.read_text() == "one" and os.listdir(tmp_path) == ["a.txt"]


def test_atomic_save_weights_writes_what_keras_loads(tmp_path):
    """The weights file is made in memory, then written: Keras loads it, optimizer
    state included, as it loads its own `save_weights` file."""
    import keras

    def model():
        m = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(),
                              keras.layers.Dense(3)])
        m.compile("adam", "mse")
        m.fit(np.ones((8, 4)), np.arange(24.0).reshape(8, 3), verbose=0)
        return m

    saved, loaded = model(), model()
    saved.fit(np.zeros((8, 4)), np.ones((8, 3)), verbose=0)
    fileio.atomic_save_weights(saved, tmp_path / "m.weights.h5")
    loaded.load_weights(tmp_path / "m.weights.h5")
    for a, b in zip(saved.weights + saved.optimizer.variables,
                    loaded.weights + loaded.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))
    assert os.listdir(tmp_path) == ["m.weights.h5"]


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755),
                                                       (0o027, 0o640, 0o750)])
def test_written_files_and_folders_respect_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    fileio.atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert _mode(tmp_path / "a.json") == file_mode
    target = tmp_path / "export"
    with fileio.atomic_directory(target) as tmp:
        os.mkdir(os.path.join(tmp, "inner"))
        with open(os.path.join(tmp, "inner", "f.bin"), "wb") as f:
            f.write(b"x")
    assert _mode(target) == dir_mode
    assert _mode(target / "inner") == dir_mode
    assert _mode(target / "inner" / "f.bin") == file_mode


def test_atomic_directory_refuses_then_replaces_with_overwrite(tmp_path):
    target = tmp_path / "out"
    with fileio.atomic_directory(target) as tmp:
        open(os.path.join(tmp, "old.txt"), "w").close()
    with pytest.raises(fileio.DestinationError, match="already exists"):
        with fileio.atomic_directory(target):
            pass
    with pytest.raises(RuntimeError):
        with fileio.atomic_directory(target, overwrite=True) as tmp:
            open(os.path.join(tmp, "new.txt"), "w").close()
            raise RuntimeError("failed half-way")
    assert os.listdir(target) == ["old.txt"]
    with fileio.atomic_directory(target, overwrite=True) as tmp:
        open(os.path.join(tmp, "new.txt"), "w").close()
    assert os.listdir(target) == ["new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["out"]  # nothing left beside it


def test_remove_stale_temporaries(tmp_path):
    keep = tmp_path / "model.keras"
    keep.write_text("x")
    stale = tmp_path / f"{fileio.TMP_PREFIX}123-model.keras"
    stale.write_text("half")
    (tmp_path / f"{fileio.TMP_PREFIX}dir").mkdir()
    fileio.remove_stale_temporaries(tmp_path)
    assert os.listdir(tmp_path) == ["model.keras"]


def test_environment_probe_describes_the_machine():
    doc = environment.describe()
    assert doc["cpu_count"] == os.cpu_count()
    assert doc["versions"]["numpy"] == np.__version__
    name, flags = environment.cpu()
    assert isinstance(name, str) and name
    if os.path.exists("/proc/cpuinfo"):
        assert set(doc["cpu_flags"]) == set(environment.ACCELERATOR_FLAGS)


def test_decode_image_resizes_and_names_a_bad_file(tmp_path):
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(np.full((20, 30), 200, np.uint8)).save(path)  # grey, 30 wide
    decoded = images.decode_image(path, (10, 12))
    assert decoded.shape == (10, 12, 3) and decoded.dtype == np.uint8
    assert int(decoded.min()) == 200
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(images.ImageError, match="bad.jpg"):
        images.decode_image(bad, 8)


def test_load_image_folder_labels_from_parent_folders(image_folder):
    x, y = images.load_image_folder(image_folder, 8, labels=["cat", "dog", "frog"])
    assert x.shape == (30, 8, 8, 3)
    assert np.bincount(y).tolist() == [10, 10, 10]
    x, y = images.load_image_folder(image_folder, 8, limit=5, labels=["other"])
    assert len(x) == 5 and y is None
    with pytest.raises(images.ImageError, match="not found"):
        images.load_image_folder(image_folder / "missing", 8)
