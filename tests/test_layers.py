"""Tests of the package's layers: LocalResponseNormalization and the fused
BatchNormalization. Backend-agnostic: CI runs this file under TensorFlow, JAX and
PyTorch (`KERAS_BACKEND=...`)."""

import numpy as np
import pytest

import keras
import keras_googlenet as kg


def _lrn_reference(x, size=5, alpha=1e-4, beta=0.75, bias=1.0):
    half = size // 2
    sq = np.pad(x**2, [(0, 0)] * 3 + [(half, half)])
    window = sum(sq[..., i : i + x.shape[-1]] for i in range(size))
    return x / (bias + alpha / size * window) ** beta


def test_local_response_normalization_matches_reference():
    x = np.random.default_rng(0).normal(scale=30.0, size=(2, 3, 3, 7)).astype("float32")
    layer = kg.LocalResponseNormalization()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x)), _lrn_reference(x), rtol=1e-5, atol=1e-6
    )
    wide = kg.LocalResponseNormalization(size=3, alpha=1.0, beta=0.5, bias=2.0)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(wide(x)),
        _lrn_reference(x, 3, 1.0, 0.5, 2.0),
        rtol=1e-5,
        atol=1e-6,
    )
    clone = kg.LocalResponseNormalization.from_config(wide.get_config())
    assert (clone.size, clone.alpha, clone.beta, clone.bias) == (3, 1.0, 0.5, 2.0)
    with pytest.raises(ValueError, match="size=4"):
        kg.LocalResponseNormalization(size=4)


def _bn_pair(shape, seed=0, attached=False, **kwargs):
    """A Keras BatchNormalization and ours, built with the same random weights. Ours
    is `kg.BatchNormalization`, or with `attached` a Keras layer given the fused
    step by `kg.use_fused_kernel` (what GoogLeNet builds)."""
    rng = np.random.default_rng(seed)
    if attached:
        ours = kg.use_fused_kernel(keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-3, **kwargs))
    else:
        ours = kg.BatchNormalization(momentum=0.9, epsilon=1e-3, **kwargs)
    ref = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3, **kwargs)
    ours.build(shape)
    ref.build(shape)
    for a, b in zip(ours.weights, ref.weights):
        value = rng.normal(size=a.shape).astype("float32") * 0.3 + 1.0
        a.assign(np.abs(value))
        b.assign(np.abs(value))
    return ours, ref


@pytest.mark.parametrize("attached", [False, True])
@pytest.mark.parametrize("shape", [(8, 5, 5, 16), (1, 1, 1, 4), (3, 7)])
def test_batch_normalization_computes_what_keras_does(shape, attached):
    """Training output and moving statistics equal Keras's layer's (fused kernel on
    TensorFlow for 4-D inputs; a 2-D input, batch 1 and the other backends take
    the Keras path)."""
    x = np.random.default_rng(1).normal(loc=2.0, scale=3.0, size=shape).astype("float32")
    ours, ref = _bn_pair(shape, attached=attached)
    for training in (True, False):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(ours(x, training=training)),
            keras.ops.convert_to_numpy(ref(x, training=training)),
            rtol=1e-4, atol=1e-4,
        )
        for a, b in zip(ours.weights, ref.weights):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    # Moving statistics really moved (the comparison above is not vacuous).
    assert not np.allclose(ours.moving_mean.numpy(),
                           _bn_pair(shape, attached=attached)[0].moving_mean.numpy())


def test_batch_normalization_gradients_equal_keras():
    """One SGD step of conv + BatchNorm gives the same weights with both layers."""
    x = np.random.default_rng(2).normal(size=(6, 6, 6, 3)).astype("float32")
    y = np.random.default_rng(3).normal(size=(6, 6, 6, 8)).astype("float32")
    results = []
    for bn in (kg.BatchNormalization, keras.layers.BatchNormalization):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((6, 6, 3)),
            keras.layers.Conv2D(8, 3, padding="same", use_bias=False),
            bn(momentum=0.9, epsilon=1e-3),
        ])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        initial = model.get_weights()
        model.fit(x, y, batch_size=6, epochs=2, verbose=0, shuffle=False)
        results.append(model.get_weights())
        # Training changed every weight (kernel, gamma, beta, moving stats).
        assert not any(np.allclose(a, b) for a, b in zip(initial, results[-1]))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_batch_normalization_uses_the_fused_kernel_only_on_tensorflow():
    layer = kg.BatchNormalization()
    x = np.zeros((2, 4, 4, 3), "float32")
    reason = layer._fused_unsupported(x, None)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        assert reason is None
        layer.build(x.shape)
        graph = tf.function(lambda t: layer(t, training=True)).get_concrete_function(
            tf.TensorSpec(x.shape)).graph
        ops_used = {op.type for op in graph.get_operations()}
        assert "FusedBatchNormV3" in ops_used
        unfused = kg.BatchNormalization(fused=False)
        unfused.build(x.shape)
        graph = tf.function(lambda t: unfused(t, training=True)).get_concrete_function(
            tf.TensorSpec(x.shape)).graph
        assert "FusedBatchNormV3" not in {op.type for op in graph.get_operations()}
    else:
        assert "backend is" in reason
        return
    assert "rank 2" in kg.BatchNormalization()._fused_unsupported(np.zeros((2, 3)), None)


def test_batch_normalization_bad_arguments():
    with pytest.raises(ValueError, match="fused='yes'"):
        kg.BatchNormalization(fused="yes")
    strict = kg.BatchNormalization(fused=True)
    with pytest.raises(ValueError, match=r"fused=True.*Received: input shape \(3, 7\)"):
        strict(np.zeros((3, 7), "float32"), training=True)
    clone = kg.BatchNormalization.from_config(kg.BatchNormalization(fused=False).get_config())
    assert clone.fused is False


def test_flat_he_normal_draws_keras_he_normal_and_saves_as_it():
    from keras_googlenet.layers import FlatHeNormal

    shape = (3, 3, 64, 96)
    stddev = np.sqrt(2.0 / (3 * 3 * 64))  # He: variance 2 / fan_in
    values = np.asarray(keras.ops.convert_to_numpy(FlatHeNormal(seed=3)(shape)))
    assert values.shape == shape and values.dtype == np.float32
    assert values.std() == pytest.approx(stddev, rel=0.03)
    assert abs(values.mean()) < 0.01 * stddev
    # Truncated at two standard deviations of the underlying normal, as Keras does.
    assert np.abs(values).max() <= 2 * stddev / 0.87962566103423978 + 1e-6
    again = keras.ops.convert_to_numpy(FlatHeNormal(seed=3)(shape))
    np.testing.assert_array_equal(values, again)  # seeded: reproducible
    other = keras.ops.convert_to_numpy(FlatHeNormal(seed=4)(shape))
    assert not np.allclose(values, other)
    model = kg.GoogLeNet(stem="cifar", classes=10, width=0.125, aux_logits=False)
    config = model.get_layer("inception_3a_3x3").get_config()["kernel_initializer"]
    assert (config["module"], config["class_name"]) == ("keras.initializers", "HeNormal")
