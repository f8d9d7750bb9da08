"""Tests of the GoogLeNet model package. Backend-agnostic: CI runs this
file under TensorFlow, JAX and PyTorch (`KERAS_BACKEND=...`)."""

import numpy as np
import pytest

import keras
import keras_googlenet as kg
from keras_googlenet import GoogLeNet


@pytest.fixture(scope="module")
def paper_model():
    """The default network at 224x224: BatchNorm, three heads, 1000 classes."""
    return GoogLeNet()


@pytest.fixture(scope="module")
def cifar_model():
    keras.utils.set_random_seed(0)
    return GoogLeNet(stem="cifar", classes=10, width=0.25)


def _images(n=2, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size, 3)).astype("float32")


# ---- numbers pinned by the issue -------------------------------------------


@pytest.mark.parametrize(
    "batch_norm, aux_logits, expected",
    [
        (False, False, 6_998_552),  # the paper's "6.8M"
        (False, True, 13_378_280),
        (True, False, 7_020_392),
        (True, True, 13_400_888),
    ],
)
def test_parameter_counts(batch_norm, aux_logits, expected):
    model = GoogLeNet(batch_norm=batch_norm, aux_logits=aux_logits)
    assert model.count_params() == expected


def test_block_output_shapes(paper_model):
    expected = {
        "3a": (28, 256), "3b": (28, 480), "4a": (14, 512), "4b": (14, 512), "4c": (14, 512),
        "4d": (14, 528), "4e": (14, 832), "5a": (7, 832), "5b": (7, 1024),
    }
    for block, (side, channels) in expected.items():
        shape = paper_model.get_layer(f"inception_{block}").output.shape
        assert tuple(shape) == (None, side, side, channels), block


def test_block_channels_follow_the_table(paper_model):
    for block, row in zip(kg.BLOCK_NAMES, kg.PAPER_BLOCKS):
        c1, _, c3, _, c5, cp = row
        assert paper_model.get_layer(f"inception_{block}").output.shape[-1] == c1 + c3 + c5 + cp
        # A real 5x5 convolution, as in the paper.
        assert paper_model.get_layer(f"inception_{block}_5x5").kernel_size == (5, 5)


def test_stem_and_heads_are_the_papers(paper_model):
    conv1 = paper_model.get_layer("conv1_7x7_s2")
    assert conv1.kernel_size == (7, 7) and conv1.strides == (2, 2) and conv1.filters == 64
    assert paper_model.get_layer("conv2_3x3_reduce").filters == 64
    assert paper_model.get_layer("conv2_3x3").filters == 192
    for head in ("aux1", "aux2"):
        pool = paper_model.get_layer(f"{head}_pool")
        assert isinstance(pool, keras.layers.AveragePooling2D)
        assert pool.pool_size == (5, 5) and pool.strides == (3, 3)
        assert paper_model.get_layer(f"{head}_conv").filters == 128
        assert paper_model.get_layer(f"{head}_fc").units == 1024
        assert paper_model.get_layer(f"{head}_dropout").rate == pytest.approx(0.7)
        assert tuple(paper_model.get_layer(f"{head}_pool").output.shape) == (None, 4, 4, paper_model.get_layer(f"{head}_pool").output.shape[-1])
    assert paper_model.get_layer("dropout").rate == pytest.approx(0.4)
    # Aux heads read 4a and 4d.
    assert paper_model.get_layer("aux1_pool").input.shape[-1] == 512
    assert paper_model.get_layer("aux2_pool").input.shape[-1] == 528


def test_batch_norm_false_is_the_2014_network():
    model = GoogLeNet(batch_norm=False, aux_logits=False)
    names = [layer.name for layer in model.layers]
    assert "pool1_norm1" in names and "conv2_norm2" in names
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert all(layer.use_bias for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    bn_model = GoogLeNet(aux_logits=False)
    assert not any(
        isinstance(layer, kg.LocalResponseNormalization) for layer in bn_model.layers
    )
    assert not any(
        layer.use_bias for layer in bn_model.layers if isinstance(layer, keras.layers.Conv2D)
    )


def test_main_path_flops_match_the_paper(paper_model):
    main_path = kg.count_flops(kg.inference_model(paper_model))
    # "about 1.5 billion multiply-adds" (Section 5); 1.58e9 with real 5x5 convs.
    assert 1.45e9 < main_path < 1.65e9
    assert kg.count_flops(paper_model) > main_path  # aux heads add work
    assert kg.count_flops(kg.inference_model(paper_model, "aux1")) < main_path


def test_count_flops_is_exact_on_a_small_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8 * 3*3*3*4
    x = keras.layers.Conv2D(5, 1, strides=2)(x)  # 4*4 * 4*5
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(7)(x)  # 80*7
    model = keras.Model(inputs, outputs)
    assert kg.count_flops(model) == 8 * 8 * 27 * 4 + 4 * 4 * 4 * 5 + 80 * 7


def test_cifar_stem_feature_sizes(cifar_model):
    assert cifar_model.get_layer("inception_3b").output.shape[1] == 32
    assert cifar_model.get_layer("inception_4e").output.shape[1] == 16
    assert cifar_model.get_layer("inception_5b").output.shape[1] == 8
    # 16x16 stage-4 maps: the paper's 5x5/3 pooling gives 4x4.
    assert tuple(cifar_model.get_layer("aux1_pool").output.shape[1:3]) == (4, 4)


def test_small_inputs_pool_adaptively_to_4x4():
    model = GoogLeNet(input_shape=(96, 96, 3), classes=10, width=0.25)
    pool = model.get_layer("aux1_pool")
    assert isinstance(pool, keras.layers.AdaptiveAveragePooling2D)
    assert tuple(pool.output.shape[1:3]) == (4, 4)
    # Same fully connected size as at 224, so the parameter count of the heads matches.
    big = GoogLeNet(classes=10, width=0.25)
    assert model.count_params() == big.count_params()


# ---- outputs and API -------------------------------------------------------


def test_named_outputs_in_order(paper_model):
    assert list(paper_model.output_names) == ["aux1", "aux2", "main"]
    assert [tuple(o.shape) for o in paper_model.outputs] == [(None, 1000)] * 3
    single = GoogLeNet(aux_logits=False, classes=5, stem="cifar", width=0.25)
    assert list(single.output_names) == ["main"]
    assert tuple(single.output.shape) == (None, 5)


@pytest.mark.parametrize(
    "loss_weights", [[0.3, 0.3, 1.0], {"aux1": 0.3, "aux2": 0.3, "main": 1.0}]
)
@pytest.mark.slow
def test_cifar_trains_forward_and_backward(cifar_model, loss_weights):
    model = cifar_model
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    # One loss per head, in the same structure (list or dict) as the weights.
    loss = [ce] * 3 if isinstance(loss_weights, list) else dict.fromkeys(model.output_names, ce)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=loss,
        loss_weights=loss_weights,
        metrics={"aux1": "accuracy", "aux2": "accuracy", "main": "accuracy"},
    )
    x = _images(8)
    y = np.arange(8) % 10
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, {"aux1": y, "aux2": y, "main": y}, epochs=1, batch_size=4, verbose=0)
    loss = history.history["loss"][-1]
    assert np.isfinite(loss) and loss > 0
    assert "main_accuracy" in history.history and "aux1_accuracy" in history.history
    changed = [not np.allclose(a, b) for a, b in zip(before, model.get_weights())]
    assert sum(changed) > len(changed) // 2  # gradients reached most of the network
    # Loss weights really apply: total = 0.3 aux1 + 0.3 aux2 + 1.0 main.
    results = model.evaluate(x, {"aux1": y, "aux2": y, "main": y}, verbose=0, return_dict=True)
    expected = 0.3 * results["aux1_loss"] + 0.3 * results["aux2_loss"] + results["main_loss"]
    assert results["loss"] == pytest.approx(expected, rel=1e-4)


def test_classifier_activation_softmax():
    model = GoogLeNet(stem="cifar", classes=4, width=0.25, classifier_activation="softmax")
    outputs = model.predict(_images(3), verbose=0)
    for probs in outputs:
        np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
        assert (probs >= 0).all()
    assert list(model.output_names) == ["aux1", "aux2", "main"]


@pytest.mark.parametrize(
    "pooling, expected", [(None, (None, 8, 8, 256)), ("avg", (None, 256)), ("max", (None, 256))]
)
def test_include_top_false(pooling, expected):
    model = GoogLeNet(include_top=False, stem="cifar", width=0.25, pooling=pooling,
                      input_shape=(32, 32, 3))
    assert tuple(model.output.shape) == expected
    assert len(model.outputs) == 1


def test_include_top_false_accepts_any_size():
    model = GoogLeNet(include_top=False, input_shape=(None, None, 3), pooling="avg", width=0.25)
    out = model.predict(_images(1, size=80), verbose=0)
    assert out.shape == (1, 256)


def test_width_scales_every_channel_count():
    model = GoogLeNet(stem="cifar", width=0.5, classes=10)
    assert model.get_layer("inception_5b").output.shape[-1] == 512
    assert model.get_layer("stem_conv_3x3").filters == 96
    assert model.get_layer("aux1_conv").filters == 64
    assert model.get_layer("aux1_fc").units == 512


def test_custom_blocks_table():
    blocks = [(8, 8, 8, 4, 4, 4)] * 9
    model = GoogLeNet(stem="cifar", classes=10, blocks=blocks, aux_logits=False)
    for name in kg.BLOCK_NAMES:
        assert model.get_layer(f"inception_{name}").output.shape[-1] == 24


def test_input_tensor():
    inputs = keras.Input((48, 48, 3))
    model = GoogLeNet(input_tensor=inputs, stem="cifar", classes=3, width=0.25)
    assert model.inputs[0] is inputs
    assert model.get_layer("inception_3a").output.shape[1] == 48


def test_mixed_precision_keeps_head_outputs_float32():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = GoogLeNet(stem="cifar", classes=10, width=0.25)
        assert model.get_layer("inception_3a").compute_dtype == "bfloat16"
        # predict: one compiled program; a call op by op compiles each op on JAX.
        outputs = model.predict(_images(2), verbose=0)
        assert [keras.backend.standardize_dtype(o.dtype) for o in outputs] == ["float32"] * 3
    finally:
        keras.config.set_dtype_policy("float32")


# ---- input convention ------------------------------------------------------


@pytest.mark.slow
def test_model_takes_raw_pixels_and_scales_inside():
    keras.utils.set_random_seed(1)
    with_pre = GoogLeNet(stem="cifar", classes=10, width=0.25, aux_logits=False)
    without = GoogLeNet(
        stem="cifar", classes=10, width=0.25, aux_logits=False, include_preprocessing=False
    )
    without.set_weights(with_pre.get_weights())
    raw = _images(2)
    np.testing.assert_allclose(
        with_pre.predict(kg.preprocess_input(raw), verbose=0),
        without.predict(raw / 127.5 - 1.0, verbose=0),
        rtol=1e-4,
        atol=1e-4,
    )
    # uint8 pixels are accepted as they are.
    np.testing.assert_allclose(
        with_pre.predict(raw.astype("uint8"), verbose=0),
        with_pre.predict(raw, verbose=0),
        rtol=1e-5,
        atol=1e-5,
    )
    assert kg.preprocess_input(raw) is raw


# ---- serialization ---------------------------------------------------------


def test_keras_save_load_round_trip(tmp_path, cifar_model):
    x = _images(2)
    path = tmp_path / "googlenet.keras"
    cifar_model.save(path)
    loaded = keras.saving.load_model(path)
    assert list(loaded.output_names) == ["aux1", "aux2", "main"]
    for a, b in zip(cifar_model.predict(x, verbose=0), loaded.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_keras_round_trip_of_the_2014_network_with_lrn(tmp_path):
    model = GoogLeNet(input_shape=(64, 64, 3), batch_norm=False, classes=5, width=0.25)
    x = _images(2, size=64)
    path = tmp_path / "lrn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("pool1_norm1"), kg.LocalResponseNormalization)
    for a, b in zip(model.predict(x, verbose=0), loaded.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_get_config_from_config(cifar_model):
    clone = keras.Model.from_config(cifar_model.get_config())
    assert clone.count_params() == cifar_model.count_params()
    assert [layer.name for layer in clone.layers] == [layer.name for layer in cifar_model.layers]
    clone.set_weights(cifar_model.get_weights())
    x = _images(2)
    for a, b in zip(cifar_model.predict(x, verbose=0), clone.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_weights_argument_loads_a_file(tmp_path, cifar_model):
    path = tmp_path / "g.weights.h5"
    cifar_model.save_weights(path)
    loaded = GoogLeNet(stem="cifar", classes=10, width=0.25, weights=str(path))
    x = _images(2)
    for a, b in zip(cifar_model.predict(x, verbose=0), loaded.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="Could not load weights"):
        GoogLeNet(stem="cifar", classes=7, width=0.25, weights=str(path))


# ---- inference_model ---------------------------------------------------------


@pytest.mark.parametrize("head, index", [("aux1", 0), ("aux2", 1), ("main", 2)])
def test_inference_model_equals_full_model_head(cifar_model, head, index):
    deployed = kg.inference_model(cifar_model, head)
    x = _images(3)
    assert list(deployed.output_names) == [head]
    np.testing.assert_allclose(
        deployed.predict(x, verbose=0),
        cifar_model.predict(x, verbose=0)[index],
        rtol=1e-5,
        atol=1e-5,
    )


def test_inference_model_cuts_the_network(cifar_model):
    names = lambda m: {layer.name for layer in m.layers}
    main = kg.inference_model(cifar_model)
    assert "aux1" not in names(main) and "aux2_fc" not in names(main)
    aux1 = kg.inference_model(cifar_model, "aux1")
    assert "inception_4a" in names(aux1)
    assert "inception_4b" not in names(aux1) and "inception_5b" not in names(aux1)
    assert aux1.count_params() < main.count_params() < cifar_model.count_params()
    # Weights are shared, not copied.
    assert aux1.get_layer("inception_3a_1x1") is cifar_model.get_layer("inception_3a_1x1")


def test_inference_model_errors(cifar_model):
    with pytest.raises(ValueError, match="head='aux3'"):
        kg.inference_model(cifar_model, "aux3")
    single = GoogLeNet(stem="cifar", classes=10, width=0.25, aux_logits=False)
    with pytest.raises(ValueError, match="no 'aux1' output"):
        kg.inference_model(single, "aux1")


def test_model_uses_keras_batch_normalization_with_the_fused_kernel(cifar_model):
    bns = [l for l in cifar_model.layers if isinstance(l, keras.layers.BatchNormalization)]
    convs = [l for l in cifar_model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(bns) == len(convs) == 57  # one per convolution (the CIFAR stem has 2 fewer)
    # Keras's own class (saved models load without keras_googlenet), given the fused step.
    assert all(type(l) is keras.layers.BatchNormalization and l.fused is None for l in bns)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        layer = bns[0]
        spec = tf.TensorSpec((2, *layer.input.shape[1:]))
        graph = tf.function(lambda t: layer(t, training=True)).get_concrete_function(spec).graph
        assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}


# ---- bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input_shape=(32, 32, 3)), r"at least 64x64 for stem='imagenet'.*input_shape=\(32, 32, 3\)"),
        (dict(stem="cifar", input_shape=(8, 8, 3)), r"at least 16x16.*input_shape=\(8, 8, 3\)"),
        (dict(input_shape=(224, 224)), r"input_shape=\(224, 224\)"),
        (dict(classes=0), "classes=0"),
        (dict(classes=2.5), "classes=2.5"),
        (dict(stem="resnet"), "stem='resnet'"),
        (dict(include_top=False, pooling="mean"), "pooling='mean'"),
        (dict(pooling="max"), "pooling='max'"),
        (dict(weights="imagenet21k"), "weights='imagenet21k'"),
        (dict(weights="/nonexistent/g.weights.h5"), "does not exist"),
        (dict(blocks=[(1, 2, 3, 4, 5, 6)] * 8), "blocks="),
        (dict(blocks=[(1, 2, 3, 4, 5)] * 9), "blocks="),
        (dict(blocks=[(1, 2, 3, 4, 5, 0)] * 9), "blocks="),
        (dict(width=0), "width=0"),
        (dict(width=-1.0), "width=-1.0"),
        (dict(dropout=1.0), "dropout=1.0"),
        (dict(classifier_activation="nope"), "classifier_activation='nope'"),
        (dict(input_shape=(None, None, 3)), "static input size"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GoogLeNet(**kwargs)


def test_weights_need_three_channels(tmp_path, cifar_model):
    path = tmp_path / "g.weights.h5"
    cifar_model.save_weights(path)
    with pytest.raises(ValueError, match=r"3 channels.*input_shape=\(32, 32, 1\)"):
        GoogLeNet(stem="cifar", classes=10, width=0.25, input_shape=(32, 32, 1), weights=str(path))
    # Without weights, other channel counts are allowed (e.g. grayscale).
    gray = GoogLeNet(stem="cifar", classes=10, width=0.25, input_shape=(32, 32, 1))
    assert gray.input_shape == (None, 32, 32, 1)


def test_torchvision_options_pool_like_pytorch_on_odd_sides():
    """PyTorch's sizes: conv1 floor((n + 6 - 7) / 2) + 1, ceil-mode pools ceil((n - k) / 2) + 1."""
    model = GoogLeNet(input_shape=(99, 99, 3), classes=3, width=0.125, aux_logits=False,
                      **kg.TORCHVISION_OPTIONS)
    ceil_pool = lambda n, k: -(-(n - k) // 2) + 1
    side = (99 + 6 - 7) // 2 + 1
    assert model.get_layer("conv1_7x7_s2").output.shape[1] == side == 50
    for layer, k in (("pool1_3x3_s2", 3), ("pool2_3x3_s2", 3), ("pool3_3x3_s2", 3),
                     ("pool4_3x3_s2", 2)):
        side = ceil_pool(side, k)
        assert model.get_layer(layer).output.shape[1:3] == (side, side), layer
    assert side == 3  # the paper's "same" pools give 4 here
    assert GoogLeNet(input_shape=(99, 99, 3), classes=3, width=0.125, aux_logits=False
                     ).get_layer("pool4_3x3_s2").output.shape[1] == 4
    assert model.get_layer("inception_3a_5x5").kernel_size == (3, 3)
    out = model.predict(_images(2, size=99), verbose=0)  # one program, not op by op (JAX)
    assert out.shape == (2, 3) and np.isfinite(out).all()


# ---- the shipped CIFAR-10 weights on every backend --------------------------


def test_the_shipped_cifar10_weights_compute_the_same_logits_on_every_backend():
    """`weights="cifar10"` on this backend against the logits recorded on TensorFlow
    (`tools/ship_cifar10.py`) for real held-out CIFAR-10 images."""
    import io
    import json
    import tarfile

    from PIL import Image
    from training_helpers import CIFAR_ARCHIVE, REPO

    record = json.loads((REPO / "benchmarks" / "results" / "cifar10_w05"
                         / "shipped_weights.json").read_text())["sample"]
    expected = np.asarray(record["logits_first_images"], np.float32)
    wanted = {name: i for i, name in enumerate(record["files"][:len(expected)])}
    images = [None] * len(wanted)
    with tarfile.open(CIFAR_ARCHIVE, "r|xz") as tar:
        for member in tar:
            if member.name in wanted:
                data = tar.extractfile(member).read()
                images[wanted[member.name]] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    logits = GoogLeNet(weights="cifar10").predict(np.stack(images).astype("float32"), verbose=0)
    np.testing.assert_allclose(logits, expected, atol=2e-3 * np.abs(expected).max())
    assert (logits.argmax(-1) == expected.argmax(-1)).all()
