"""Shared data, helpers and fixtures of the `test_export*` tests.

The models are tiny (CIFAR stem, width 0.125, 16x16 inputs, 3 classes),
briefly fitted on easy synthetic images so that their predictions are
confident and top-1 agreement is a meaningful check. The session fixtures
(`model`, `images`) are defined once, in conftest.py, for every file; each test
file imports the module fixtures it uses (`from export_helpers import workdir, ...`).
"""

import os

import numpy as np
import pytest

SIZE = 16
CLASSES = ["a_red", "b_green", "c_blue"]  # sorted, as class folders are read


def make_images(n, seed):
    """Noise images whose brightest channel is the class (easy to learn)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    x = rng.integers(0, 130, (n, SIZE, SIZE, 3))
    x[np.arange(n), :, :, y] += 125
    # Some full-range pixels, so calibration sees both 0 and 255.
    x[:, 0, 0, :] = rng.choice([0, 255], (n, 3))
    return x.astype(np.uint8), y


def softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def keras_probs(model, x, head="main"):
    outputs = model.predict(x.astype("float32"), verbose=0, batch_size=64)
    index = list(model.output_names).index(head)
    return softmax(np.asarray(outputs[index], np.float64))


def assert_other_head(probs, other):
    """`probs` are clearly not `other`'s (compared as log-probabilities)."""
    log = lambda p: np.log(np.clip(np.asarray(p, np.float64), 1e-12, 1.0))
    assert np.abs(log(probs) - log(other)).max() > 0.5


def write_folder(root, x, y):
    from PIL import Image

    for i, (image, label) in enumerate(zip(x, y)):
        folder = os.path.join(root, CLASSES[label])
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(image).save(os.path.join(folder, f"{i:04d}.png"))


def listing(path):
    return sorted(os.listdir(path))


def tiny_config():
    """The `GoogLeNetConfig` of the `model` fixture."""
    from keras_googlenet import GoogLeNetConfig

    return GoogLeNetConfig(stem="cifar", classes=len(CLASSES), width=0.125,
                           input_shape=(SIZE, SIZE, 3))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="session")
def model():
    import keras

    from keras_googlenet import build_model

    keras.utils.set_random_seed(1)
    m = build_model(tiny_config())
    m.compile(
        keras.optimizers.Adam(3e-3),
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * 3,
    )
    x, y = make_images(256, seed=0)
    m.fit(x.astype("float32"), (y, y, y), epochs=2, batch_size=32, verbose=0)
    return m


@pytest.fixture(scope="session")
def images():
    return make_images(90, seed=5)


@pytest.fixture(scope="module")
def model_file(workdir, model):
    path = os.path.join(workdir, "tiny.keras")
    model.save(path)
    return path


@pytest.fixture(scope="module")
def image_folder(workdir, images):
    root = os.path.join(workdir, "images")
    write_folder(root, *images)
    return root
