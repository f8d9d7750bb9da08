"""GoogLeNet behaves like keras.applications where we claim it does.

keras.applications' conventions, checked here against our model: models build
under `keras.config.set_image_data_format("channels_first")` and compute the
same function as in channels_last (with the same weights, including pretrained
ones); without the top and without `input_shape` the input is `(None, None, 3)`.
Backend-agnostic: run it under `KERAS_BACKEND=jax` and `torch` too.
"""

import keras
import numpy as np
import pytest

import keras_googlenet as kg
from keras_googlenet import torch_weights


@pytest.fixture
def channels_first():
    """Switches Keras to channels_first for one test and restores the format after it."""
    before = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    yield
    keras.config.set_image_data_format(before)


def _images(n, size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size, 3)).astype("float32")


def _nchw(images):
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _outputs(model, images):
    out = model.predict(images, verbose=0)
    return out if isinstance(out, list) else [out]


def _channels_first_twin(build, images):
    """Outputs of `build()` in channels_last, and of its channels_first build
    given the channels_last model's weights and the transposed images."""
    keras.utils.set_random_seed(0)
    last = build()
    expected = _outputs(last, images)
    keras.config.set_image_data_format("channels_first")
    keras.utils.set_random_seed(1)  # other random weights, replaced below
    first = build()
    first.set_weights(last.get_weights())
    return first, _outputs(first, _nchw(images)), expected


# ---- channels_first ----------------------------------------------------------


def _shape(size):
    """A `size`x`size` RGB input shape in the current image data format."""
    if keras.config.image_data_format() == "channels_last":
        return (size, size, 3)
    return (3, size, size)


@pytest.mark.parametrize("arguments, size", [
    (dict(stem="cifar", classes=10, width=0.25), 32),  # both auxiliary heads
    (dict(batch_norm=False, width=0.25, classes=7), 64),  # the 2014 network, with LRN
    (dict(width=0.25, **kg.TORCHVISION_OPTIONS), 67),  # ceil mode on odd sides
])
@pytest.mark.slow
def test_channels_first_computes_what_channels_last_computes(channels_first, arguments, size):
    keras.config.set_image_data_format("channels_last")
    images = _images(2, size)
    model, outputs, expected = _channels_first_twin(
        lambda: kg.GoogLeNet(input_shape=_shape(size), **arguments), images)
    assert model.input_shape == (None, 3, size, size)
    assert len(outputs) == len(expected) == 3  # aux1, aux2, main
    for ours, theirs in zip(outputs, expected):
        # Compared to the outputs' scale (float32 through ~60 layers).
        assert np.abs(theirs).max() > 1e-3
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * max(1.0, np.abs(theirs).max()))


def test_channels_first_default_shape_and_features(channels_first):
    model = kg.GoogLeNet(width=0.25, aux_logits=False)
    assert model.input_shape == (None, 3, 224, 224)
    assert model.get_layer("inception_5b").output.shape == (None, 256, 7, 7)
    features = kg.GoogLeNet(include_top=False, stem="cifar", width=0.25, input_shape=(3, 32, 32))
    assert features.output_shape == (None, 256, 8, 8)


@pytest.mark.parametrize("input_shape, message", [
    ((3, 63, 224), r"at least 64x64 .* input_shape=\(3, 63, 224\) \(channels_first\)"),
    ((None, 224, 224), r"input channels \(axis 0 .* channels_first\)"),
])
def test_channels_first_bad_shapes_name_the_value(channels_first, input_shape, message):
    with pytest.raises(ValueError, match=message):
        kg.GoogLeNet(input_shape=input_shape, aux_logits=False)


def test_channels_first_size_64_is_accepted(channels_first):
    """(3, 64, 64) was read as 3 rows before: the smallest size must build."""
    model = kg.GoogLeNet(input_shape=(3, 64, 64), width=0.25)
    assert [o.shape for o in model.outputs] == [(None, 1000)] * 3


@pytest.mark.slow
def test_cifar10_weights_load_in_channels_first(channels_first):
    keras.config.set_image_data_format("channels_last")
    images = _images(4, 32, seed=3)
    model, (ours,), (expected,) = _channels_first_twin(
        lambda: kg.GoogLeNet(weights="cifar10"), images)
    assert model.input_shape == (None, 3, 32, 32)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    # Loading itself (not set_weights) gives the channels_first model those numbers.
    loaded = kg.GoogLeNet(weights="cifar10")
    np.testing.assert_allclose(loaded.predict(_nchw(images), verbose=0), expected,
                               rtol=0, atol=1e-5 * np.abs(expected).max())
    with pytest.raises(ValueError, match=r"must be \(3, 32, 32\) \(channels_first"):
        kg.GoogLeNet(weights="cifar10", input_shape=(32, 32, 3))


@pytest.fixture(scope="module")
def torchvision_pth(tmp_path_factory):
    """A torchvision-layout GoogLeNet state dict with random values (and aux heads)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    state = {}
    for key, shape in torch_weights.TORCH_SHAPES.items():
        shape = tuple(1000 if d is None else d for d in shape)
        if key.endswith("running_var"):
            value = rng.uniform(0.5, 1.5, shape)
        elif key.endswith(".weight") and len(shape) > 1:
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0, np.sqrt(2 / fan_in), shape)
        else:
            value = rng.normal(0, 0.1, shape)
        state[key] = torch.from_numpy(value.astype("float32"))
    path = tmp_path_factory.mktemp("pth") / "googlenet.pth"
    torch.save(state, path)
    return path


@pytest.mark.slow
def test_torchvision_pth_loads_in_channels_first(channels_first, torchvision_pth):
    """Every output (the auxiliary heads' flattened 4x4 maps too) as in channels_last."""
    keras.config.set_image_data_format("channels_last")
    images = _images(2, 96, seed=5)
    last = kg.GoogLeNet(weights=torchvision_pth, aux_logits=True, input_shape=(96, 96, 3))
    expected = _outputs(last, images)
    keras.config.set_image_data_format("channels_first")
    first = kg.GoogLeNet(weights=torchvision_pth, aux_logits=True, input_shape=(3, 96, 96))
    outputs = _outputs(first, _nchw(images))
    assert len(outputs) == 3
    for ours, theirs in zip(outputs, expected):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())


# ---- include_top=False: any input size by default ------------------------------


@pytest.mark.parametrize("data_format, expected", [
    ("channels_last", (None, None, None, 3)), ("channels_first", (None, 3, None, None))])
@pytest.mark.slow
def test_features_without_input_shape_take_any_size(channels_first, data_format, expected):
    keras.config.set_image_data_format(data_format)
    model = kg.GoogLeNet(include_top=False, width=0.25)
    assert model.input_shape == expected
    images = _images(1, 80)
    features = model.predict(images if data_format == "channels_last" else _nchw(images),
                             verbose=0)
    # 80 -> 40 (conv1) -> 20 -> 10 (stem pools) -> 5 (stage 4) -> 3 (stage 5)
    assert features.shape == ((1, 3, 3, 256) if data_format == "channels_last" else (1, 256, 3, 3))
    # With the top, the stem's size, as before.
    assert kg.GoogLeNet(width=0.25).input_shape[1:] == _shape(224)
    assert kg.GoogLeNet(width=0.25, stem="cifar").input_shape[1:] == _shape(32)


@pytest.mark.slow
def test_features_of_any_size_equal_those_of_a_fixed_size():
    keras.utils.set_random_seed(0)
    fixed = kg.GoogLeNet(include_top=False, width=0.25, input_shape=(96, 96, 3))
    free = kg.GoogLeNet(include_top=False, width=0.25)
    free.set_weights(fixed.get_weights())
    images = _images(2, 96)
    np.testing.assert_allclose(free.predict(images, verbose=0), fixed.predict(images, verbose=0),
                               rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("side", [67, 66])  # odd and even maps after the stride-2 layers
def test_ceil_mode_pools_on_unknown_sides_equal_known_ones(side):
    """torchvision's ceil_mode pools give the same features when the size is not known
    when the model is built (its default without the top)."""
    keras.utils.set_random_seed(0)
    options = dict(include_top=False, width=0.25, **kg.TORCHVISION_OPTIONS)
    fixed = kg.GoogLeNet(input_shape=(side, side, 3), **options)
    free = kg.GoogLeNet(**options)
    free.set_weights(fixed.get_weights())
    images = _images(2, side)
    expected = fixed.predict(images, verbose=0)
    ours = free.predict(images, verbose=0)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_pretrained_features_take_any_size():
    model = kg.GoogLeNet(weights="cifar10", include_top=False)
    assert model.input_shape == (None, None, None, 3)
    assert model.predict(_images(1, 48), verbose=0).shape == (1, 12, 12, 512)
    # With the top, the weights' size.
    assert kg.GoogLeNet(weights="cifar10").input_shape == (None, 32, 32, 3)


@pytest.mark.parametrize("arguments, message", [
    (dict(input_shape=(63, 63, 3)), r"at least 64x64 for stem='imagenet'.*\(63, 63, 3\)"),
    (dict(input_shape=(None, 40, 3)), r"at least 64x64 .*\(None, 40, 3\)"),
    (dict(input_shape=(15, 15, 3), stem="cifar"), r"at least 16x16 for stem='cifar'.*\(15, 15, 3\)"),
])
def test_features_refuse_too_small_known_sizes(arguments, message):
    with pytest.raises(ValueError, match=message):
        kg.GoogLeNet(include_top=False, **arguments)


# ---- decode_predictions: keras.applications' class names -----------------------


def test_class_index_is_keras_own_file():
    """The shipped file is the one keras.applications downloads (its `file_hash`)."""
    import hashlib
    import importlib.resources
    import inspect

    from keras.src.applications import imagenet_utils

    from keras_googlenet import imagenet

    data = (importlib.resources.files("keras_googlenet") / imagenet.CLASSES_FILE).read_bytes()
    assert hashlib.md5(data).hexdigest() == imagenet.KERAS_CLASS_INDEX_MD5
    # ... which is the hash Keras itself checks the download against.
    assert f'file_hash="{imagenet.KERAS_CLASS_INDEX_MD5}"' in inspect.getsource(
        imagenet_utils.decode_predictions)


def test_decode_predictions_equals_keras_applications(monkeypatch):
    """Same (wnid, name, score) tuples as keras.applications' decode_predictions, fed the
    shipped file in place of its download (no internet here)."""
    import importlib.resources

    from keras.src.applications import imagenet_utils

    path = importlib.resources.files("keras_googlenet") / "imagenet_class_index.json"
    monkeypatch.setattr(imagenet_utils.file_utils, "get_file", lambda *a, **k: str(path))
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", None)
    preds = np.random.default_rng(0).random((3, 1000)).astype("float32")
    preds[0, [386, 134, 517, 2, 638]] = [5, 4, 3, 2, 1]  # the names that used to differ
    theirs = keras.applications.imagenet_utils.decode_predictions(preds, top=1000)
    ours = kg.decode_predictions(preds, top=1000)
    assert [[(w, n) for w, n, _ in row] for row in ours] == \
        [[(w, n) for w, n, _ in row] for row in theirs]
    assert [name for _, name, _ in ours[0][:5]] == [
        "African_elephant", "crane", "crane", "great_white_shark", "maillot"]
    np.testing.assert_allclose([[s for *_, s in row] for row in ours],
                               [[s for *_, s in row] for row in theirs], rtol=0, atol=0)
    # One home: the pretrained registry's ImageNet names are these names.
    from keras_googlenet import pretrained

    assert pretrained.class_names("imagenet") == kg.imagenet_class_names() == [
        n for _, n, _ in sorted(ours[1], key=lambda t: t[0])]


# ---- .keras files load with Keras alone ---------------------------------------

#: Loads a .keras file in a fresh Python that never imports keras_googlenet, predicts
#: on saved images and writes the outputs (or the error) beside them.
_PLAIN_KERAS_LOAD = """
import sys, numpy as np, keras
path, images, out = sys.argv[1:4]
try:
    model = keras.saving.load_model(path)
except Exception as e:
    open(out + ".error", "w").write(f"{type(e).__name__}: {e}")
    raise SystemExit(3)
assert "keras_googlenet" not in sys.modules, "the check needs a process without keras_googlenet"
outputs = model.predict(np.load(images), verbose=0)
np.savez(out, *(outputs if isinstance(outputs, list) else [outputs]))
"""


def _load_with_keras_alone(tmp_path, path, images):
    import os
    import subprocess
    import sys

    np.save(tmp_path / "images.npy", images)
    out = tmp_path / "outputs.npz"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["KERAS_BACKEND"] = keras.backend.backend()
    result = subprocess.run(
        [sys.executable, "-c", _PLAIN_KERAS_LOAD, str(path), str(tmp_path / "images.npy"),
         str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode == 3:
        return (tmp_path / "outputs.npz.error").read_text()
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


@pytest.mark.slow
def test_default_model_loads_with_keras_alone(tmp_path):
    keras.utils.set_random_seed(0)
    model = kg.GoogLeNet(stem="cifar", classes=10, width=0.25)
    # Train a step so that the moving statistics are not their initial values.
    images = _images(8, 32)
    model.compile(optimizer="sgd", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    targets = np.eye(10, dtype="float32")[np.arange(8) % 10]
    model.fit(images, {h: targets for h in model.output_names}, epochs=1, verbose=0)
    path = tmp_path / "googlenet.keras"
    model.save(path)
    import json
    import zipfile

    config = zipfile.ZipFile(path).read("config.json").decode()
    assert "keras_googlenet" not in config
    assert json.loads(config)["config"]["layers"][3]["module"] == "keras.layers"
    outputs = _load_with_keras_alone(tmp_path, path, images[:4])
    expected = _outputs(model, images[:4])
    assert len(outputs) == len(expected) == 3
    for ours, theirs in zip(outputs, expected):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_lrn_model_without_the_package_names_the_import(tmp_path):
    # (LRN is in the paper's stem only.)
    model = kg.GoogLeNet(classes=10, width=0.125, batch_norm=False, aux_logits=False,
                         input_shape=(64, 64, 3))
    path = tmp_path / "googlenet_2014.keras"
    model.save(path)
    error = _load_with_keras_alone(tmp_path, path, _images(1, 64))
    assert isinstance(error, str), "the 2014 network needs keras_googlenet to load"
    assert "LocalResponseNormalization" in error and "import keras_googlenet" in error
    # With the package, it loads and computes the same.
    loaded = keras.saving.load_model(path)
    images = _images(2, 64)
    np.testing.assert_allclose(loaded.predict(images, verbose=0),
                               model.predict(images, verbose=0), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_files_saved_with_the_old_batch_normalization_class_still_load(tmp_path):
    """Earlier versions saved `keras_googlenet>BatchNormalization` layers."""
    model = kg.GoogLeNet(stem="cifar", classes=10, width=0.125, aux_logits=False)

    def old_class(layer):
        if type(layer) is keras.layers.BatchNormalization:
            return kg.BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    old = keras.models.clone_model(model, clone_function=old_class)
    old.set_weights(model.get_weights())
    path = tmp_path / "old.keras"
    old.save(path)
    import zipfile

    assert "keras_googlenet>BatchNormalization" in zipfile.ZipFile(path).read(
        "config.json").decode()
    loaded = keras.saving.load_model(path)
    assert any(type(l) is kg.BatchNormalization for l in loaded.layers)
    images = _images(2, 32)
    np.testing.assert_allclose(loaded.predict(images, verbose=0),
                               model.predict(images, verbose=0), rtol=0, atol=1e-5)
