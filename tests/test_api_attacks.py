"""Attacks on the library API: hostile arguments to GoogLeNet,
GoogLeNetConfig, inference_model and count_flops.

Every bad value must raise `ValueError` naming it (never TypeError,
OverflowError or AttributeError, never a silent truncation); numpy scalars
are accepted as keras.applications users expect; `count_flops` counts every
convolution kind and every call of a shared layer, checked against numbers
computed by hand in the comments.
"""

import json
import math

import keras
import numpy as np
import pytest
from training_helpers import HOSTILE_TENSORS, save_state_dict

from keras_googlenet import GoogLeNet, GoogLeNetConfig, count_flops, inference_model
from keras_googlenet.architecture import PAPER_BLOCKS

L = keras.layers
SMALL = dict(stem="cifar", width=0.125, input_shape=(32, 32, 3), classes=10)

# ---- GoogLeNet / GoogLeNetConfig: bad values ----------------------------------

BAD_ARGUMENTS = [
    ("input_shape", (32.9, 32.9, 3)),
    ("input_shape", "323"),
    ("input_shape", b"323"),
    ("input_shape", (32, 32)),
    ("input_shape", (32, 32, 3, 1)),
    ("input_shape", (32, 32, "3")),
    ("input_shape", (True, 32, 3)),
    ("input_shape", (32, 32, 0)),
    ("input_shape", (32, -32, 3)),
    ("input_shape", (10**12, 32, 3)),
    ("input_shape", (32, float("nan"), 3)),
    ("input_shape", {32, 3}),
    ("include_top", "False"),
    ("include_top", 1),
    ("aux_logits", "yes"),
    ("batch_norm", None),
    ("include_preprocessing", "True"),
    ("classes", "10"),
    ("classes", 10.5),
    ("classes", 10.0),
    ("classes", 0),
    ("classes", True),
    ("classes", np.float64(10)),
    ("width", float("inf")),
    ("width", float("nan")),
    ("width", "1"),
    ("width", 0),
    ("width", -0.5),
    ("width", 1e300),
    ("width", True),
    ("dropout", float("nan")),
    ("dropout", 1.0),
    ("dropout", "0.4"),
    ("aux_dropout", np.bool_(True)),
    ("stem", ["cifar"]),
    ("pooling", ["avg"]),
    ("blocks", [[64.5, 96, 128, 16, 32, 32]] * 9),
    ("name", 5),
]


@pytest.mark.parametrize("field, value", BAD_ARGUMENTS, ids=lambda v: repr(v)[:30])
def test_bad_argument_is_a_value_error_naming_it(field, value):
    kwargs = {**SMALL, field: value}
    with pytest.raises(ValueError) as info:
        GoogLeNet(**kwargs)
    assert type(info.value) is ValueError
    assert f"{field}=" in str(info.value)
    # The same through the configuration object, with no Keras model involved.
    with pytest.raises(ValueError) as info:
        GoogLeNetConfig(**kwargs).validate()
    assert type(info.value) is ValueError and f"{field}=" in str(info.value)


# ---- numpy scalars are accepted ------------------------------------------------

NUMPY_ARGUMENTS = [
    ("classes", np.int64(7)),
    ("classes", np.uint8(7)),
    ("input_shape", (np.int64(32), np.int32(40), np.int64(3))),
    ("input_shape", np.array([32, 40, 3])),
    ("width", np.float32(0.125)),
    ("width", np.int64(1)),
    ("dropout", np.float64(0.2)),
    ("include_top", np.bool_(True)),
    ("aux_logits", np.False_),
    ("blocks", np.array(PAPER_BLOCKS)),
]


@pytest.mark.parametrize("field, value", NUMPY_ARGUMENTS, ids=lambda v: repr(v)[:30])
def test_numpy_scalars_are_accepted_and_json_round_trips(field, value):
    if field == "input_shape" and isinstance(value, np.ndarray):
        value = tuple(value)  # keras.applications users pass array-derived tuples
    config = GoogLeNetConfig(**{**SMALL, "width": 0.0625, field: value}).validate()
    # Every field is a plain Python value, so JSON works and round-trips.
    assert GoogLeNetConfig.from_json(config.to_json()) == config
    for name, v in config.to_dict().items():
        assert type(v) in (bool, int, float, str, list, type(None)), (name, type(v))
    model = GoogLeNet(**{**SMALL, "width": 0.0625, "aux_logits": False, field: value})
    assert model.output_shape[-1] == int(config.classes) or not config.include_top


def test_numpy_classes_reach_the_model():
    model = GoogLeNet(**{**SMALL, "classes": np.int64(10), "aux_logits": False})
    assert model.output_shape == (None, 10)
    shape = GoogLeNet(**{**SMALL, "input_shape": (np.int64(48), np.int64(40), np.int64(3)),
                         "aux_logits": False, "include_top": False}).input_shape
    assert shape == (None, 48, 40, 3)


# ---- inference_model / count_flops: not a model --------------------------------


@pytest.mark.parametrize("function", [inference_model, count_flops])
@pytest.mark.parametrize("value", [None, "x", 3, keras.layers.Dense(2)], ids=repr)
def test_not_a_model_is_a_value_error(function, value):
    with pytest.raises(ValueError) as info:
        function(value)
    assert type(info.value) is ValueError and "model=" in str(info.value)


@pytest.mark.parametrize("head", [["main"], None, 0, "aux3"], ids=repr)
def test_inference_model_bad_head(head):
    model = GoogLeNet(**SMALL)
    with pytest.raises(ValueError, match="head="):
        inference_model(model, head=head)


# ---- count_flops: hand-computed numbers ----------------------------------------


def _model(build, *shapes):
    inputs = [keras.Input(s) for s in shapes]
    outputs = build(*inputs)
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs)


FLOPS_CASES = {
    # 8x8 output positions x (3x3 kernel x 3 channels x depth multiplier 2) = 64 * 54.
    "depthwise2d": (lambda x: L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x),
                    [(8, 8, 3)], 64 * 54),
    # 10 - 3 + 1 = 8 positions x 3 x 4 channels x multiplier 1.
    "depthwise1d": (lambda x: L.DepthwiseConv1D(3)(x), [(10, 4)], 8 * 3 * 4),
    # 64 positions x (depthwise 3*3*3*1 + pointwise 3*5).
    "separable2d": (lambda x: L.SeparableConv2D(5, 3, padding="same")(x), [(8, 8, 3)],
                    64 * (27 + 15)),
    # Multiplier 2: depthwise 3*3*3*2 = 54, pointwise 6*5 = 30; stride 2: 4x4 outputs.
    "separable2d_strided": (
        lambda x: L.SeparableConv2D(5, 3, strides=2, depth_multiplier=2, padding="same")(x),
        [(8, 8, 3)], 16 * (54 + 30)),
    # Per input position (8x8): 3x3 kernel x 5 in x 4 out.
    "transpose2d": (lambda x: L.Conv2DTranspose(4, 3, strides=2, padding="same")(x),
                    [(8, 8, 5)], 64 * 180),
    # Per input position (6): kernel 2 x 3 in x 2 out.
    "transpose1d": (lambda x: L.Conv1DTranspose(2, 2, strides=2)(x), [(6, 3)], 6 * 12),
    # 8 valid positions x 3 x 3 in x 4 out.
    "conv1d": (lambda x: L.Conv1D(4, 3)(x), [(10, 3)], 8 * 36),
    # 4x4x4 positions x 3x3x3 x 2 in x 3 out.
    "conv3d": (lambda x: L.Conv3D(3, 3, padding="same")(x), [(4, 4, 4, 2)], 64 * 162),
    # Grouped: kernel (1, 1, 4/2, 6) per position.
    "grouped": (lambda x: L.Conv2D(6, 1, groups=2)(x), [(5, 5, 4)], 25 * 12),
    # channels_first: positions are the last two axes (8x8), not (3, 8).
    "channels_first": (
        lambda x: L.Conv2D(4, 3, padding="same", data_format="channels_first")(x),
        [(3, 8, 8)], 64 * 108),
    # Dense on a sequence: 5 positions x 4 x 3.
    "dense_sequence": (lambda x: L.Dense(3)(x), [(5, 4)], 60),
}


@pytest.mark.parametrize("case", sorted(FLOPS_CASES))
def test_count_flops_by_hand(case):
    build, shapes, expected = FLOPS_CASES[case]
    assert count_flops(_model(build, *shapes)) == expected


def test_shared_layer_counts_once_per_call():
    dense = L.Dense(4)
    model = _model(lambda x: dense(dense(x)), (4,))
    assert count_flops(model) == 2 * 16


def test_shared_conv_on_two_sizes_counts_each_call():
    conv = L.Conv2D(2, 1)
    model = _model(lambda a, b: [conv(a), conv(b)], (8, 8, 3), (4, 4, 3))
    assert count_flops(model) == 64 * 6 + 16 * 6


def test_nested_model_called_twice():
    inner = keras.Sequential([keras.Input((4,)), L.Dense(4)])
    model = _model(lambda x: inner(inner(x)), (4,))
    assert count_flops(model) == 2 * 16
    assert count_flops(inner) == 16


def test_inference_model_counts_only_its_own_graph():
    """inference_model shares layers with the full model: their other calls do not count."""
    full = GoogLeNet(**SMALL)
    main = GoogLeNet(**{**SMALL, "aux_logits": False})
    assert count_flops(inference_model(full)) == count_flops(main)
    assert count_flops(full) > count_flops(main)


@pytest.mark.parametrize("layer", [
    lambda: L.EinsumDense("ab,bc->ac", output_shape=3),
    lambda: L.LSTM(3),
    lambda: L.Embedding(10, 3),
], ids=["einsum", "lstm", "embedding"])
def test_uncountable_layers_are_refused_by_name(layer):
    layer = layer()
    shape = (4,) if not isinstance(layer, L.LSTM) else (5, 4)
    model = _model(lambda x: layer(x), shape)
    with pytest.raises(ValueError, match=f"layer {layer.name!r}"):
        count_flops(model)


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="Net"):
        count_flops(net)


def test_paper_count_unchanged():
    model = GoogLeNet(aux_logits=False, batch_norm=False)
    mflops = count_flops(model) / 1e6
    assert 1400 < mflops < 1600, mflops
    assert math.isclose(count_flops(inference_model(GoogLeNet(batch_norm=False))),
                        count_flops(model))
    json.dumps(count_flops(model))  # a plain int


# ---- weights files that are not dense float tensors ----------------------------


@pytest.mark.parametrize("hostile", sorted(HOSTILE_TENSORS))
def test_state_dict_of_hostile_tensors_is_a_value_error(tmp_path, hostile):
    path = save_state_dict(tmp_path / f"{hostile}.pth", hostile)
    key = HOSTILE_TENSORS[hostile][0]
    with pytest.raises(ValueError) as info:
        GoogLeNet(weights=path, input_shape=(64, 64, 3))
    assert type(info.value) is ValueError and f"key {key!r}" in str(info.value)


@pytest.mark.parametrize("variable, value, message", [
    ("inception_3a_1x1/kernel", np.nan, "holds 1 NaN or infinite value(s)"),
    ("main/bias", -np.inf, "holds 1 NaN or infinite value(s)"),
    ("inception_4a_pool_proj_bn/moving_variance", -0.5,
     "is a BatchNorm variance and holds negative values (smallest -0.5)"),
])
def test_keras_weights_with_impossible_values_are_refused_by_variable(
        tmp_path, variable, value, message):
    model = GoogLeNet(batch_norm=True, **SMALL)
    weight = next(w for w in model.weights if w.path == variable)
    array = keras.ops.convert_to_numpy(weight).copy()
    array.flat[0] = value
    weight.assign(array)
    model.save_weights(tmp_path / "bad.weights.h5")
    with pytest.raises(ValueError) as info:
        GoogLeNet(batch_norm=True, weights=str(tmp_path / "bad.weights.h5"), **SMALL)
    assert type(info.value) is ValueError
    assert f"variable {variable!r} {message}" in str(info.value), info.value


def test_a_directory_as_weights_is_called_a_directory(tmp_path):
    folder = tmp_path / "w.weights.h5"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"is a directory, not a weights file .*Received: "):
        GoogLeNet(weights=str(folder), **SMALL)


# ---- model folders whose model_config.json is hostile ----------------------------


def test_load_model_folder_of_deeply_nested_json_names_the_file(tmp_path):
    from keras_googlenet import load_model_folder

    (tmp_path / "model_config.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError) as info:
        load_model_folder(tmp_path)
    message = str(info.value)
    assert type(info.value) is ValueError and str(tmp_path / "model_config.json") in message
    assert "nested too deeply" in message and len(message.splitlines()) == 1
