"""`--precision`: auto's choice by CPU features, printed and recorded; a bf16 run end to end."""

import json

import keras
import numpy as np
import pytest
from training_helpers import CLASSES, TINY, make_image_folder

from keras_googlenet.environment import accelerator, auto_precision, cpu
from training.cifar import main
from training.config import TrainConfig

#: TINY without its `--precision float32` pin.
AUTO = [a for i, a in enumerate(TINY) if a != "--precision" and TINY[i - 1] != "--precision"]


def _args(root, name, *extra):
    return ["--name", name, "--data-dir", str(root / "data"), "--runs-dir", str(root / "runs"),
            "--export-dir", str(root / "saved"), "--cache-dir", str(root / "cache"),
            "--epochs", "1", *extra]


def test_auto_precision_is_printed_in_the_first_line_and_recorded(tmp_path, capsys):
    make_image_folder(tmp_path / "data", per_class=10)
    assert main(_args(tmp_path, "auto", "--no-export", *AUTO)) == 0
    first = next(line for line in capsys.readouterr().out.splitlines()
                 if line.startswith("Run auto:"))
    backend, gpu = accelerator()
    policy, reason = auto_precision(backend, gpu, cpu()[1])
    assert f", {policy} (auto: {reason}), " in first
    saved = json.loads((tmp_path / "runs" / "auto" / "config.json").read_text())
    assert (saved["precision"], saved["precision_reason"]) == (policy, f"auto: {reason}")
    # An explicit --precision has no reason, and its line shows just the policy.
    assert TrainConfig(precision="float32").resolve().precision_text == "float32"


def test_a_resumed_auto_run_is_not_refused_for_a_missing_or_other_reason():
    saved = TrainConfig(precision="mixed_bfloat16", precision_reason=None).resolve()
    again = TrainConfig(precision="mixed_bfloat16", precision_reason="auto: CPU has amx_bf16")
    assert again.resolve().resume_differences(saved) == []
    assert TrainConfig(precision="float32").resolve().resume_differences(saved) == ["precision"]


@pytest.mark.backends("tensorflow")
def test_mixed_bfloat16_run_trains_in_bf16_and_exports_float32_probabilities(tmp_path):
    import tensorflow as tf

    make_image_folder(tmp_path / "data", per_class=10)
    assert main(_args(tmp_path, "bf16", *AUTO, "--precision", "mixed_bfloat16")) == 0
    run = tmp_path / "runs" / "bf16"
    assert TrainConfig.load(run / "config.json").precision == "mixed_bfloat16"
    model = keras.saving.load_model(run / "model.keras", compile=False)
    assert model.get_layer("inception_3a").compute_dtype == "bfloat16"
    assert model.get_layer("inception_3a").variable_dtype == "float32"  # float32 weights
    assert all(np.isfinite(w).all() for w in model.get_weights())

    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype("uint8")
    served = tf.saved_model.load(str(tmp_path / "saved" / "bf16")).signatures["serving_default"]
    probabilities = next(iter(served(tf.constant(images)).values()))
    assert probabilities.dtype == tf.float32 and probabilities.shape == (4, len(CLASSES))
    expected = keras.ops.softmax(model(images.astype("float32"), training=False)[-1])
    # The export computes what the trained model computes (the same bf16 layers).
    np.testing.assert_allclose(probabilities.numpy(), keras.ops.convert_to_numpy(expected),
                               atol=1e-3)
    np.testing.assert_allclose(probabilities.numpy().sum(axis=1), 1, atol=1e-3)
