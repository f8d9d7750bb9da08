"""GoogLeNet as a KerasHub preset (`keras_googlenet.hub`, `python -m training.export --preset`).

A tiny random network (CIFAR stem, width 0.125, 3 classes, 32x32) is written as
a run folder, turned into a preset by the command line, and loaded back through
KerasHub's own base classes. Needs KerasHub (the `test` extra installs it) and
TensorFlow (KerasHub's preprocessing runs in tf.data; the TFLite comparison).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

import keras  # noqa: E402

from keras_googlenet import GoogLeNetConfig, build_model  # noqa: E402
from keras_googlenet import hub  # noqa: E402
from training import export as run_export  # noqa: E402

pytestmark = [pytest.mark.backends("tensorflow"), pytest.mark.slow]  # slow: exports runs and fits presets

SIZE, CLASSES = 32, ["cat", "dog", "eel"]
#: What `GoogLeNetImageClassifier.save_to_preset` writes, and KerasHub's loader reads.
PRESET_FILES = ["config.json", "image_converter.json", "metadata.json", "model.weights.h5",
                "preprocessor.json", "task.json", "task.weights.h5"]


def _config(**changes):
    return GoogLeNetConfig(stem="cifar", width=0.125, classes=len(CLASSES),
                           input_shape=(SIZE, SIZE, 3), **changes)


def _images(n, size=SIZE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size[0], size[1], 3)
                                                if isinstance(size, tuple)
                                                else (n, size, size, 3)).astype("uint8")


def _main(model, x):
    """The `main` head's logits of a GoogLeNet on float pixels."""
    return np.asarray(model.predict(np.asarray(x, "float32"), verbose=0)[-1])


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    return build_model(_config())


@pytest.fixture(scope="module")
def preset(model, tmp_path_factory):
    """A run folder (model.keras, model_config.json, labels.txt) exported with --preset."""
    root = tmp_path_factory.mktemp("hub")
    run = root / "run"
    run.mkdir()
    model.save(run / "model.keras")
    _config().save(run / "model_config.json")
    (run / "labels.txt").write_text("".join(c + "\n" for c in CLASSES))
    assert run_export.main([str(run), "--preset", str(root / "preset")]) == 0
    return root / "preset"


@pytest.fixture(scope="module")
def classifier(preset):
    return keras_hub.models.ImageClassifier.from_preset(str(preset))


def test_the_preset_folder_has_kerashub_layout(preset, model):
    assert sorted(os.listdir(preset)) == PRESET_FILES
    config = json.loads((preset / "config.json").read_text())
    assert config["registered_name"] == "keras_googlenet>GoogLeNetBackbone"
    assert config["config"]["stem"] == "cifar" and config["config"]["input_shape"] == [SIZE, SIZE, 3]
    task = json.loads((preset / "task.json").read_text())
    assert task["registered_name"] == "keras_googlenet>GoogLeNetImageClassifier"
    assert task["config"]["class_names"] == CLASSES
    converter = json.loads((preset / "image_converter.json").read_text())["config"]
    assert converter["image_size"] == [SIZE, SIZE] and converter["scale"] is None
    metadata = json.loads((preset / "metadata.json").read_text())
    assert metadata["tasks"] == ["ImageClassifier"]
    head = model.get_layer("main").count_params()
    aux = sum(model.get_layer(n).count_params() for n in model.output_names[:-1])
    assert aux > 0  # the run's model had auxiliary heads; the preset's backbone has none
    assert metadata["parameter_count"] + head < model.count_params()


def test_kerashub_base_classes_load_our_classes(classifier, preset):
    assert type(classifier) is hub.GoogLeNetImageClassifier
    assert type(classifier.preprocessor) is hub.GoogLeNetImageClassifierPreprocessor
    assert type(classifier.preprocessor.image_converter) is hub.GoogLeNetImageConverter
    backbone = keras_hub.models.Backbone.from_preset(str(preset))
    assert type(backbone) is hub.GoogLeNetBackbone
    assert classifier.class_names == CLASSES
    x = _images(2).astype("float32")
    np.testing.assert_allclose(backbone.predict(x, verbose=0),
                               classifier.backbone.predict(x, verbose=0), atol=1e-5)


def test_preset_predictions_match_the_run_model(classifier, model):
    x = _images(4, seed=1)
    np.testing.assert_allclose(classifier.predict(x, verbose=0), _main(model, x), atol=1e-5)


def test_raw_uint8_images_of_another_size_are_resized_once_and_scaled_once(classifier, model):
    x = _images(3, size=(45, 60), seed=2)
    resized = keras.layers.Resizing(SIZE, SIZE, crop_to_aspect_ratio=True)(x.astype("float32"))
    expected = _main(model, keras.ops.convert_to_numpy(resized))
    np.testing.assert_allclose(classifier.predict(x, verbose=0), expected, atol=1e-4)


def test_a_backbone_without_rescaling_gets_a_scaling_converter(model, tmp_path):
    bare = build_model(_config(include_preprocessing=False))
    bare.set_weights(model.get_weights())  # the rescaling layer has no weights
    hub.save_preset(bare, tmp_path / "bare", config=_config(include_preprocessing=False))
    loaded = keras_hub.models.ImageClassifier.from_preset(str(tmp_path / "bare"))
    assert loaded.preprocessor.image_converter.scale is not None
    x = _images(2, seed=4)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), _main(model, x), atol=1e-5)


def test_double_or_missing_scaling_is_refused(classifier):
    scaling = hub.GoogLeNetImageConverter(image_size=(SIZE, SIZE), scale=1 / 127.5, offset=-1.0)
    with pytest.raises(ValueError, match=r"include_preprocessing=True, scale=0\.00784"):
        hub.GoogLeNetImageClassifier(
            classifier.backbone, 3, hub.GoogLeNetImageClassifierPreprocessor(scaling))
    bare = hub.GoogLeNetBackbone(stem="cifar", width=0.125, input_shape=(SIZE, SIZE, 3),
                                 include_preprocessing=False)
    resizing_only = hub.GoogLeNetImageConverter(image_size=(SIZE, SIZE))
    with pytest.raises(ValueError, match="include_preprocessing=False, scale=None"):
        hub.GoogLeNetImageClassifier(bare, 3, hub.GoogLeNetImageClassifierPreprocessor(resizing_only))


def test_one_step_of_fit_changes_the_weights(preset):
    tuned = keras_hub.models.ImageClassifier.from_preset(str(preset))
    tuned.compile(optimizer=keras.optimizers.SGD(0.1))
    before = [w.numpy().copy() for w in (tuned.output_dense.kernel,
                                         tuned.backbone.get_layer("stem_conv_3x3").kernel)]
    history = tuned.fit(_images(4, size=(40, 40), seed=5), np.array([0, 1, 2, 0]),
                        batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [tuned.output_dense.kernel.numpy(),
             tuned.backbone.get_layer("stem_conv_3x3").kernel.numpy()]
    for old, new in zip(before, after):
        assert np.abs(new - old).max() > 1e-6


def test_the_preset_exports_to_tflite_with_the_same_top1(classifier):
    from keras_googlenet import export as ex

    network = hub.to_googlenet(classifier)
    assert network.output_names == ["main"]
    x = _images(6, seed=6)
    logits = classifier.predict(x, verbose=0)
    litert = ex.LiteRTClassifier(ex.convert_model(network, "float32")).predict(x)
    np.testing.assert_array_equal(litert.argmax(-1), logits.argmax(-1))
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(litert, probs / probs.sum(-1, keepdims=True), atol=1e-4)


def test_bad_arguments_name_the_value(model):
    with pytest.raises(ValueError, match="Received: config=None"):
        hub.save_preset(model, "unused")
    with pytest.raises(ValueError, match="Received: classes=3"):
        hub.GoogLeNetBackbone(stem="cifar", classes=3)
    with pytest.raises(ValueError, match=r"Received: model_or_run_dir=3"):
        hub.save_preset(3, "unused")


def test_cli_preset_needs_a_model_config(model, tmp_path, capsys):
    model.save(tmp_path / "plain.keras")
    assert run_export.main([str(tmp_path / "plain.keras"), "--preset", str(tmp_path / "p")]) == 1
    assert "model_config.json" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    assert run_export.main([str(tmp_path / "plain.keras")]) == 2
    assert "one of --name and --preset is required" in capsys.readouterr().err


def test_import_keras_googlenet_registers_the_classes_only_once_keras_hub_is_imported(preset):
    code = (
        "import sys, keras_googlenet\n"
        "assert 'keras_hub' not in sys.modules and 'keras_googlenet.hub' not in sys.modules\n"
        "import keras_hub\n"
        f"model = keras_hub.models.ImageClassifier.from_preset({str(preset)!r})\n"
        "print(type(model).__module__, type(model).__name__)\n"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (repo, os.environ.get("PYTHONPATH")) if p))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["keras_googlenet.hub", "GoogLeNetImageClassifier"]
