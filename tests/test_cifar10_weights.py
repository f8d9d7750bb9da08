"""`GoogLeNet(weights="cifar10")`: the shipped CIFAR-10 model, its Android files, its errors.

The figures checked here were recorded by `tools/ship_cifar10.py` from the training run
(`benchmarks/results/cifar10_w05/`): 500 held-out images of the real CIFAR-10 archive
(50 per class, never trained on) and the shipped model's accuracy on them.
"""

import io
import json
import tarfile

import numpy as np
import pytest
from training_helpers import CIFAR_ARCHIVE, REPO, make_image_folder

import keras_googlenet as kg
from keras_googlenet import pretrained

RECORD = REPO / "benchmarks" / "results" / "cifar10_w05" / "shipped_weights.json"
EXPORT = REPO / "saved_models" / "googlenet-cifar10"
SHIPPED_FILES = ("model_int8.tflite", "model_float16.tflite", "labels.txt", "export_report.json")


@pytest.fixture(scope="module")
def record():
    return json.loads(RECORD.read_text())


@pytest.fixture(scope="module")
def sample(record):
    """`(x uint8 [500, 32, 32, 3], y)`: the recorded held-out images, read from the archive."""
    from PIL import Image

    assert CIFAR_ARCHIVE.is_file(), f"this test needs {CIFAR_ARCHIVE}"
    wanted = {name: i for i, name in enumerate(record["sample"]["files"])}
    x = [None] * len(wanted)
    with tarfile.open(CIFAR_ARCHIVE, "r|xz") as tar:
        for member in tar:
            i = wanted.get(member.name)
            if i is not None:
                data = tar.extractfile(member).read()
                x[i] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert all(image is not None for image in x), "recorded files missing from the archive"
    return np.stack(x), np.asarray(record["sample"]["labels"])


@pytest.fixture(scope="module")
def model():
    return kg.GoogLeNet(weights="cifar10")


def test_the_weights_choose_their_configuration(model):
    assert model.output_names == ["main"] and model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 10)
    assert model.count_params() == 1_482_570  # CIFAR stem, width 0.5, no auxiliary heads
    assert model.get_layer("inception_5b").output.shape[-1] == 512
    assert kg.cifar10_class_names() == ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                        "frog", "horse", "ship", "truck"]


@pytest.mark.slow
def test_the_shipped_model_reaches_its_recorded_accuracy(model, sample, record):
    x, y = sample
    accuracy = np.mean(model.predict(x.astype("float32"), verbose=0).argmax(-1) == y)
    assert abs(accuracy - record["sample"]["accuracy_shipped"]) <= 0.005
    assert accuracy > 0.8  # a trained model, not chance (0.1)


def test_float16_storage_cost_was_measured_and_is_small(record):
    held_out = record["held_out"]
    assert held_out["images"] == 5000
    assert abs(held_out["float16_cost_points"]) <= 0.05
    assert record["shipped_dtype"] == "float16"


def test_features_for_transfer_learning_are_the_backbone_of_the_classifier(model, sample):
    import keras

    x = sample[0][:8].astype("float32")
    features = kg.GoogLeNet(weights="cifar10", include_top=False, pooling="avg")
    assert features.output_shape == (None, 512)
    inner = keras.Model(model.input, model.get_layer("avg_pool").output)
    np.testing.assert_allclose(features.predict(x, verbose=0), inner.predict(x, verbose=0),
                               atol=1e-5)
    # Other input sizes work for features (not for the 32x32 classifier).
    assert kg.GoogLeNet(weights="cifar10", include_top=False,
                        input_shape=(64, 64, 3)).output_shape == (None, 16, 16, 512)


@pytest.mark.parametrize("arguments, named", [
    (dict(width=1.0), "width=1.0"),
    (dict(stem="imagenet"), "stem='imagenet'"),
    (dict(classes=100), "classes=100"),
    (dict(input_shape=(64, 64, 3)), "input_shape=(64, 64, 3)"),
    (dict(aux_logits=True), "aux_logits=True"),
    (dict(batch_norm=False), "batch_norm=False"),
    (dict(large_branch_kernel=3), "large_branch_kernel=3"),
])
def test_a_contradicting_argument_is_a_one_line_error_naming_it(arguments, named):
    with pytest.raises(ValueError) as info:
        kg.GoogLeNet(weights="cifar10", **arguments)
    message = str(info.value)
    assert "\n" not in message and named in message and "weights='cifar10'" in message


@pytest.mark.parametrize("content, says", [(None, "is missing"), (b"not a zip", "is damaged")])
def test_a_missing_or_damaged_weights_file_is_a_one_line_error(tmp_path, monkeypatch, content,
                                                               says):
    import importlib.resources

    path = tmp_path / "weights.npz"
    if content is not None:
        path.write_bytes(content)
    root = importlib.resources.files("keras_googlenet")
    entry = dict(pretrained.PRETRAINED_WEIGHTS["cifar10"],
                 package_file=str(path.relative_to(root) if path.is_relative_to(root) else path))
    monkeypatch.setitem(pretrained.PRETRAINED_WEIGHTS, "cifar10", entry)
    with pytest.raises(ValueError) as info:
        kg.GoogLeNet(weights="cifar10")
    assert says in str(info.value) and "\n" not in str(info.value)
    assert "reinstall the package" in str(info.value)


def test_the_android_files_are_small_and_labelled():
    sizes = {name: (EXPORT / name).stat().st_size for name in SHIPPED_FILES}
    shipped = REPO / "keras_googlenet" / pretrained.PRETRAINED_WEIGHTS["cifar10"]["package_file"]
    assert sum(sizes.values()) + shipped.stat().st_size <= 10 * 2**20
    assert (EXPORT / "labels.txt").read_text().splitlines() == kg.cifar10_class_names()
    report = json.loads((EXPORT / "export_report.json").read_text())
    rows = {row["format"]: row for row in report["artifacts"]}
    assert set(rows) == {"int8", "float16"}
    assert rows["int8"]["input"]["dtype"] == rows["int8"]["output"]["dtype"] == "uint8"
    assert report["classes"] == 10 and report["sample"]["labelled"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["int8", "float16"])
def test_the_tflite_files_agree_with_keras(model, sample, fmt):
    from keras_googlenet import export as ex

    x, _ = sample
    litert = ex.LiteRTClassifier(EXPORT / f"model_{fmt}.tflite").predict(x)
    keras_top1 = model.predict(x.astype("float32"), verbose=0).argmax(-1)
    assert np.mean(litert.argmax(-1) == keras_top1) >= 0.98


@pytest.mark.slow
def test_mediapipe_returns_the_class_names(sample):
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    x, y = sample
    names = kg.cifar10_class_names()
    picked = np.concatenate([np.flatnonzero(y == c)[:3] for c in range(10)])
    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=str(EXPORT / "model_int8.tflite")),
        max_results=1)
    right = 0
    with vision.ImageClassifier.create_from_options(options) as task:
        for i in picked:
            result = task.classify(mp.Image(image_format=mp.ImageFormat.SRGB,
                                            data=np.ascontiguousarray(x[i])))
            (category,) = result.classifications[0].categories
            assert category.category_name == names[category.index]
            right += category.category_name == names[y[i]]
    assert right >= 0.8 * len(picked)


@pytest.mark.slow
def test_training_fine_tunes_from_it_on_another_folder(tmp_path, capsys):
    from training.cifar import main

    make_image_folder(tmp_path / "data", per_class=6, size=32)
    assert main(["--weights", "cifar10", "--name", "ft", "--data-dir", str(tmp_path / "data"),
                 "--runs-dir", str(tmp_path / "runs"), "--no-export", "--epochs", "1",
                 "--batch-size", "8", "--precision", "float32", "--verbose", "2"]) == 0
    out = capsys.readouterr().out
    assert "Loaded the pretrained backbone" in out and "--weights cifar10" in out
    saved = json.loads((tmp_path / "runs" / "ft" / "model_config.json").read_text())["config"]
    assert (saved["stem"], saved["width"], saved["input_shape"]) == ("cifar", 0.5, [32, 32, 3])
    assert saved["classes"] == 3


def test_training_refuses_settings_the_weights_cannot_fit(tmp_path, capsys):
    from training.cifar import main

    assert main(["--weights", "cifar10", "--width", "1", "--data", "synthetic",
                 "--runs-dir", str(tmp_path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --width must be 0.5 with --weights cifar10")


def test_the_wheel_ships_the_weights_and_stays_small(tmp_path):
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", str(REPO), "-w", str(tmp_path)], check=True, capture_output=True,
                   timeout=300)
    (wheel,) = tmp_path.glob("keras_googlenet-*.whl")
    assert wheel.stat().st_size <= 8 * 2**20
    names = zipfile.ZipFile(wheel).namelist()
    entry = pretrained.PRETRAINED_WEIGHTS["cifar10"]
    for file in (entry["package_file"], entry["class_names"]):
        assert f"keras_googlenet/{file}" in names
