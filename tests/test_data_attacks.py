"""Hostile or unusual data: control characters in class names, one class, every Pillow mode."""

import numpy as np
import pytest
from PIL import Image
from training_helpers import make_image_folder

from keras_googlenet._internal.images import decode_image
from training.config import TrainConfig
from training.data import DataError, load_arrays


def folder_config(data_dir, tmp_path, **fields):
    fields = {"image_size": 16, "val_fraction": 0.2, **fields}
    return TrainConfig(data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"),
                       **fields).resolve()


# ---- class folders ------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["ca\nt", "ca\tt", "ca\rt", "ca\x1bt", "ca\x7ft", "ca\x85t",
                                 "ca\u202et", "ca\u2028t"])
@pytest.mark.parametrize("split", ["train", "val"])
def test_class_folder_with_control_characters_is_refused_naming_it(tmp_path, bad, split):
    root = make_image_folder(tmp_path / "data", classes=(bad, "dog"), per_class=2, size=8)
    if split == "val":  # train/ is clean, val/ holds the bad name
        root = make_image_folder(tmp_path / "data2", classes=("cat", "dog"), per_class=2, size=8)
        make_image_folder(root, split="val", classes=(bad, "dog"), per_class=1, size=8)
    with pytest.raises(DataError, match="has a control character") as raised:
        load_arrays(folder_config(root, tmp_path))
    assert repr(bad) in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("with_val", [False, True])
def test_a_single_class_is_refused(tmp_path, with_val):
    root = make_image_folder(tmp_path / "data", classes=("cat",), per_class=4, size=8)
    if with_val:
        make_image_folder(root, split="val", classes=("cat",), per_class=2, size=8)
    with pytest.raises(DataError, match=r"1 class\(es\) \['cat'\]; a classifier needs at least"):
        load_arrays(folder_config(root, tmp_path))


def test_two_classes_are_enough(tmp_path):
    root = make_image_folder(tmp_path / "data", classes=("cat", "dog"), per_class=5, size=8)
    *_, names = load_arrays(folder_config(root, tmp_path))
    assert names == ["cat", "dog"]


@pytest.mark.parametrize("target", ["train", "root", "dog"])
def test_a_class_folder_linked_to_its_split_or_above_is_refused(tmp_path, target):
    """train/loop -> train/ (or the dataset root, or another class) would make a class
    of other classes' images."""
    root = make_image_folder(tmp_path / "data", classes=("cat", "dog"), per_class=3, size=8)
    link = root / "train" / "loop"
    link.symlink_to({"train": root / "train", "root": root, "dog": root / "train" / "dog"}[target],
                    target_is_directory=True)
    with pytest.raises(DataError, match=r"class folder train/loop is a link to .*remove the link"):
        load_arrays(folder_config(root, tmp_path))


def test_a_class_folder_linked_elsewhere_is_a_class(tmp_path):
    root = make_image_folder(tmp_path / "data", classes=("cat", "dog"), per_class=3, size=8)
    other = make_image_folder(tmp_path / "elsewhere", classes=("frog",), per_class=3, size=8)
    (root / "train" / "frog").symlink_to(other / "train" / "frog", target_is_directory=True)
    *_, names = load_arrays(folder_config(root, tmp_path))
    assert names == ["cat", "dog", "frog"]


@pytest.mark.parametrize("special", ["fifo", "dev_zero", "broken_link"])
@pytest.mark.parametrize("skip", [False, True])
def test_what_is_not_a_regular_file_is_reported_not_read(tmp_path, capsys, special, skip):
    """A FIFO (reading it would block), /dev/zero (never ends) or a broken link named
    like an image is an unreadable file: reported, or skipped with a warning."""
    import os

    root = make_image_folder(tmp_path / "data", classes=("cat", "dog"), per_class=3, size=8)
    path = root / "train" / "cat" / "special.png"
    if special == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero" if special == "dev_zero" else root / "missing.png")
    config = folder_config(root, tmp_path, skip_bad_images=skip)
    if not skip:
        with pytest.raises(DataError, match=r"1 unreadable or non-image file\(s\) .*"
                           r"train/cat/special\.png"):
            load_arrays(config)
        return
    x_train, _, x_val, *_ = load_arrays(config)
    assert len(x_train) + len(x_val) == 6
    assert "warning: skipped 1 unreadable or non-image file(s) (e.g. train/cat/special.png)" in (
        capsys.readouterr().err)


def test_decode_image_refuses_a_fifo_without_opening_it(tmp_path):
    import os

    from keras_googlenet._internal.images import ImageError

    os.mkfifo(tmp_path / "x.png")
    with pytest.raises(ImageError, match="not a regular file \\(a FIFO\\)"):
        decode_image(tmp_path / "x.png", 8)


# ---- every Pillow mode ----------------------------------------------------------------


def _raw(mode, dtype, values):
    array = np.asarray(values, dtype=dtype).reshape(1, -1)
    return Image.frombytes(mode, (array.shape[1], 1), array.tobytes())


def _palette_with_transparency():
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 255, 0])
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0  # palette entry 0 (red) is transparent
    return image


def _grey(*values):
    return [[v, v, v] for v in values]


# (name, image factory, file format, expected RGB pixels of the one-row image)
MODES = [
    ("I;16 png", lambda: _raw("I;16", "<u2", [0, 32768, 65535]), "PNG", _grey(0, 128, 255)),
    ("I;16 tiff", lambda: _raw("I;16", "<u2", [257, 32768, 65535]), "TIFF", _grey(1, 128, 255)),
    ("I;16B tiff", lambda: _raw("I;16B", ">u2", [0, 32768, 65535]), "TIFF", _grey(0, 128, 255)),
    ("I tiff", lambda: _raw("I", "<i4", [-5, 32768, 70000]), "TIFF", _grey(0, 128, 255)),
    ("F tiff", lambda: _raw("F", "<f4", [-1.0, 0.5, 2.0]), "TIFF", _grey(0, 128, 255)),
    ("LA png", lambda: Image.frombytes("LA", (2, 1), bytes([200, 255, 200, 0])), "PNG",
     _grey(200, 0)),
    ("RGBA png", lambda: Image.frombytes("RGBA", (2, 1), bytes([10, 20, 30, 255, 9, 9, 9, 51])),
     "PNG", [[10, 20, 30], [2, 2, 2]]),
    ("P+transparency png", _palette_with_transparency, "PNG", [[0, 0, 0], [0, 255, 0]]),
    ("P gif", lambda: _palette_with_transparency(), "GIF", [[0, 0, 0], [0, 255, 0]]),
    ("CMYK tiff", lambda: Image.frombytes("CMYK", (3, 1), bytes([0, 0, 0, 0, 0, 0, 0, 255,
                                                                  255, 0, 0, 0])),
     "TIFF", [[255, 255, 255], [0, 0, 0], [0, 255, 255]]),
    ("1 png", lambda: Image.frombytes("L", (2, 1), bytes([0, 255])).convert("1"), "PNG",
     _grey(0, 255)),
    ("L png", lambda: Image.frombytes("L", (2, 1), bytes([7, 128])), "PNG", _grey(7, 128)),
    ("RGB png", lambda: Image.frombytes("RGB", (1, 1), bytes([1, 2, 3])), "PNG", [[1, 2, 3]]),
]


@pytest.mark.parametrize("name, factory, fmt, expected", MODES, ids=[m[0] for m in MODES])
def test_every_pillow_mode_decodes_to_the_right_rgb(tmp_path, name, factory, fmt, expected):
    image = factory()
    path = tmp_path / f"image.{fmt.lower()}"
    image.save(path, fmt, **({"transparency": 0} if fmt == "GIF" else {}))
    with Image.open(path) as reopened:  # the file really holds the mode under test
        assert reopened.mode.split(";")[0] == image.mode.split(";")[0]
    expected = np.array(expected, np.uint8)[None]
    decoded = decode_image(path, (1, expected.shape[1]))
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, expected)


def test_sixteen_bit_mid_grey_survives_resizing(tmp_path):
    path = tmp_path / "grey16.png"
    Image.fromarray(np.full((6, 6), 32768, np.uint16)).save(path)
    assert np.all(decode_image(path, 3) == 128)
