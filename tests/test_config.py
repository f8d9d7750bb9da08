"""The model configuration (`GoogLeNetConfig`), model folders and the architecture facts.

Backend-agnostic: CI runs this file under TensorFlow, JAX and PyTorch.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras_googlenet as kg
from keras_googlenet import architecture
from keras_googlenet.config import GoogLeNetConfig
from keras_googlenet.saving import WEIGHTS_FILE, build_model, load_model_folder, save_model_folder

TINY = dict(stem="cifar", classes=3, width=0.125, input_shape=(16, 16, 3))


# ---- architecture facts --------------------------------------------------------


def test_block_outputs_follow_the_table():
    assert architecture.PAPER_OUTPUTS == {
        "3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512,
        "4d": 528, "4e": 832, "5a": 832, "5b": 1024,
    }
    assert [b for stage in architecture.STAGES for b in stage] == list(architecture.BLOCK_NAMES)
    assert architecture.STAGE_BLOCKS[4] == ("4a", "4b", "4c", "4d", "4e")
    assert architecture.HEADS == ("aux1", "aux2", "main")
    assert set(architecture.AUX_HEADS.values()) <= set(architecture.BLOCK_NAMES)


@pytest.mark.parametrize("stem, size, expected", [
    ("imagenet", 224, {3: 28, 4: 14, 5: 7}),
    ("imagenet", 96, {3: 12, 4: 6, 5: 3}),
    ("imagenet", 100, {3: 13, 4: 7, 5: 4}),
    ("cifar", 32, {3: 32, 4: 16, 5: 8}),
])
def test_stage_sides_match_the_built_model(stem, size, expected):
    assert architecture.stage_sides(stem, size) == expected
    model = kg.GoogLeNet(stem=stem, input_shape=(size, size, 3), width=0.125, classes=2,
                         aux_logits=False)
    for number, side in expected.items():
        block = architecture.STAGE_BLOCKS[number][0]
        assert model.get_layer(f"inception_{block}").output.shape[1] == side


def test_scale_channels_rounds_half_to_even_and_keeps_one_channel():
    assert architecture.scale_channels(64, 0.5) == 32
    assert architecture.scale_channels(5, 0.5) == 2  # 2.5 -> 2 (half to even)
    assert architecture.scale_channels(7, 0.5) == 4  # 3.5 -> 4
    assert architecture.scale_channels(1, 0.01) == 1
    np.testing.assert_array_equal(
        architecture.scale_channels([5, 7, 1], 0.5), np.array([2, 4, 1])
    )


def test_importing_the_package_and_its_facts_does_not_import_keras():
    code = (
        "import sys, keras_googlenet as kg; "
        "kg.GoogLeNetConfig(stem='cifar', classes=10).validate(); kg.PAPER_BLOCKS; "
        "import keras_googlenet.architecture, keras_googlenet.config; "
        "import keras_googlenet._internal.fileio; "
        "print('keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- GoogLeNetConfig -------------------------------------------------------------


def test_defaults_are_googlenets_defaults():
    import inspect

    signature = inspect.signature(kg.GoogLeNet)
    defaults = {n: p.default for n, p in signature.parameters.items()
                if n not in ("weights", "input_tensor")}
    # None in the signature: "the paper's value, unless pretrained weights need another".
    from keras_googlenet.weights import DEFAULT_ARGUMENTS

    resolved = {"aux_logits": True, **DEFAULT_ARGUMENTS}
    resolved.pop("blocks")  # None is the paper's table in both
    assert set(resolved) == {n for n, v in defaults.items() if v is None and n != "pooling"
                             and n != "input_shape" and n != "classifier_activation"
                             and n != "blocks"}
    assert GoogLeNetConfig().kwargs() == {**defaults, **resolved}


def test_json_round_trip(tmp_path):
    config = GoogLeNetConfig(stem="cifar", classes=10, width=0.5, input_shape=(32, 32, 3),
                             blocks=architecture.PAPER_BLOCKS, classifier_activation="softmax")
    again = GoogLeNetConfig.from_json(config.to_json())
    assert again == config
    assert isinstance(again.blocks[0], tuple) and again.input_shape == (32, 32, 3)
    path = tmp_path / kg.MODEL_CONFIG_FILE
    config.save(path)
    assert GoogLeNetConfig.load(tmp_path) == config  # a folder holding one works too
    doc = json.loads(path.read_text())
    assert doc["class_name"] == "GoogLeNet" and doc["config"]["width"] == 0.5


@pytest.mark.parametrize("field, value", [
    ("classes", 0), ("classes", True), ("width", -1), ("dropout", 1.0), ("aux_dropout", -0.1),
    ("stem", "resnet"), ("pooling", "sum"), ("blocks", [[1, 2, 3]]), ("include_top", "yes"),
    ("classifier_activation", "no_such_activation"), ("name", ""),
])
def test_invalid_values_name_the_value(field, value):
    with pytest.raises(ValueError, match=f"Received: {field}="):
        GoogLeNetConfig(**{field: value}).validate()


def test_googlenet_raises_the_same_errors_as_its_config():
    with pytest.raises(ValueError, match="Received: width=0"):
        kg.GoogLeNet(width=0)


def test_unknown_keys_and_other_documents_are_refused(tmp_path):
    with pytest.raises(ValueError, match="Unknown GoogLeNet argument"):
        GoogLeNetConfig.from_dict({"classes": 10, "depth": 3})
    with pytest.raises(ValueError, match="Not a GoogLeNet model configuration"):
        GoogLeNetConfig.from_json(json.dumps({"epochs": 3}))
    with pytest.raises(ValueError, match="format"):
        GoogLeNetConfig.from_json(json.dumps({"class_name": "GoogLeNet", "format": 99,
                                              "config": {}}))
    with pytest.raises(ValueError, match="Could not read the model configuration"):
        GoogLeNetConfig.load(tmp_path / "missing.json")


def test_differences_and_replace():
    a = GoogLeNetConfig(stem="cifar")
    b = a.replace(width=0.5, name="small")
    assert a.differences(b) == ["width", "name"]
    with pytest.raises(ValueError, match="Received: width=0"):
        a.replace(width=0)


# ---- building and model folders ---------------------------------------------------


def test_build_model_is_googlenet_with_the_configs_arguments():
    config = GoogLeNetConfig(**TINY)
    model = build_model(config)
    assert model.count_params() == kg.GoogLeNet(**TINY).count_params()
    assert model.output_names == list(architecture.HEADS)
    with pytest.raises(ValueError, match="must be a GoogLeNetConfig"):
        build_model(TINY)



def test_build_model_builds_from_the_config_alone_and_googlenet_wraps_it(monkeypatch):
    import keras_googlenet.model as model_module

    config = GoogLeNetConfig(**TINY)
    expected = [(w.path, tuple(w.shape)) for w in build_model(config).weights]
    # build_model never goes through the keyword API ...
    monkeypatch.setattr(model_module, "GoogLeNet", None)
    assert [(w.path, tuple(w.shape)) for w in build_model(config).weights] == expected
    monkeypatch.undo()
    # ... and GoogLeNet makes the config and hands it to the same builder.
    built = []
    real = model_module._build
    monkeypatch.setattr(model_module, "_build", lambda c, w, t: built.append(c) or real(c, w, t))
    kg.GoogLeNet(**TINY)
    assert built == [config]
    # A config that does not fit pretrained weights is refused by name.
    with pytest.raises(ValueError, match=r"fit only width=0.5\. Received: width="):
        build_model(GoogLeNetConfig(stem="cifar", width=0.25, classes=10,
                                    input_shape=(32, 32, 3)), weights="cifar10")

def test_model_folder_round_trip_gives_equal_outputs(tmp_path, make_images):
    config = GoogLeNetConfig(**TINY)
    model = build_model(config)
    x = make_images(3, size=16)
    folder = tmp_path / "model"
    save_model_folder(model, folder, config)
    assert sorted(os.listdir(folder)) == sorted([kg.MODEL_CONFIG_FILE, WEIGHTS_FILE])
    loaded = load_model_folder(folder)
    for a, b in zip(model.predict(x, verbose=0), loaded.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    renamed = load_model_folder(folder, name="renamed")
    assert renamed.name == "renamed"


def test_model_folder_errors(tmp_path):
    config = GoogLeNetConfig(**TINY)
    with pytest.raises(ValueError, match="weights do not match"):
        save_model_folder(build_model(config.replace(width=0.25)), tmp_path / "m", config)
    with pytest.raises(ValueError, match="Model folder not found"):
        load_model_folder(tmp_path / "nowhere")
    config.save(tmp_path / kg.MODEL_CONFIG_FILE)
    with pytest.raises(ValueError, match="has no weights"):
        load_model_folder(tmp_path)


def test_weights_file_refuses_a_different_saved_configuration(tmp_path):
    config = GoogLeNetConfig(**TINY)
    save_model_folder(build_model(config), tmp_path, config)
    weights = tmp_path / WEIGHTS_FILE
    with pytest.raises(ValueError, match=r"width=0\.25 \(saved: 0\.125\)"):
        kg.GoogLeNet(**{**TINY, "width": 0.25}, weights=str(weights))
    # Fields without weights of their own may differ: a new name, another input size.
    model = kg.GoogLeNet(**{**TINY, "input_shape": (24, 24, 3)}, name="other",
                         weights=str(weights))
    assert model.input_shape == (None, 24, 24, 3)


@pytest.mark.slow
@pytest.mark.parametrize("order", ["import keras_googlenet, keras", "import keras, keras_googlenet"])
def test_saved_models_load_after_importing_the_package_in_either_order(tmp_path, order):
    # The package imports no Keras, yet its layers must be registered for
    # keras.saving.load_model whichever of the two is imported first.
    model = build_model(GoogLeNetConfig(**TINY))
    path = tmp_path / "m.keras"
    model.save(path)
    code = f"{order}; m = keras.saving.load_model({str(path)!r}); print(m.count_params())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == str(model.count_params())
