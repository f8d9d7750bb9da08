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
def test_a_mixed_bfloat16_run_exports_float32_graphs_in_every_format(tmp_path, capsys):
    """The default precision on a bf16 CPU: train, then the run's own SavedModel and
    `python -m training.export` with every format, all float32 graphs."""
    import tensorflow as tf

    from keras_googlenet import export as ex
    from keras_googlenet.utils import float32_model
    from training import export as export_cli

    make_image_folder(tmp_path / "data", per_class=10)
    assert main(_args(tmp_path, "bf16", *AUTO, "--precision", "mixed_bfloat16")) == 0
    run = tmp_path / "runs" / "bf16"
    assert TrainConfig.load(run / "config.json").precision == "mixed_bfloat16"
    model = keras.saving.load_model(run / "model.keras", compile=False)
    assert model.get_layer("inception_3a").compute_dtype == "bfloat16"
    assert model.get_layer("inception_3a").variable_dtype == "float32"  # float32 weights
    assert all(np.isfinite(w).all() for w in model.get_weights())

    # The run's SavedModel (written at the end of training) is a float32 graph ...
    saved = tmp_path / "saved" / "bf16"
    graph_dtypes = {
        attr.type
        for f in [tf.saved_model.load(str(saved)).signatures["serving_default"].graph]
        for op in f.get_operations() for attr in op.node_def.attr.values() if attr.type
    }
    assert tf.bfloat16.as_datatype_enum not in graph_dtypes
    # ... computing the trained weights in float32: the float32 copy of the model,
    # and within bf16 rounding of the bf16 model itself.
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3)).astype("uint8")
    served = tf.saved_model.load(str(saved)).signatures["serving_default"]
    probabilities = next(iter(served(tf.constant(images)).values())).numpy()
    assert probabilities.dtype == np.float32 and probabilities.shape == (8, len(CLASSES))
    copy = float32_model(model)
    assert {layer.compute_dtype for layer in copy.layers if layer.weights} == {"float32"}
    as_float32 = keras.ops.softmax(copy(images.astype("float32"), training=False)[-1])
    np.testing.assert_allclose(probabilities, keras.ops.convert_to_numpy(as_float32), atol=1e-5)
    as_bf16 = keras.ops.softmax(model(images.astype("float32"), training=False)[-1])
    np.testing.assert_allclose(probabilities, keras.ops.convert_to_numpy(as_bf16), atol=0.05)

    # Every TFLite format converts with builtin ops only, from the run folder as a user would.
    capsys.readouterr()
    assert export_cli.main([str(run), "--name", "bf16-all", "--export-dir", str(tmp_path / "x"),
                            "--repeats", "2", "--eval-samples", "32"]) == 0
    out = capsys.readouterr().out
    assert not [line for line in out.splitlines() if line.startswith("error")]
    assert "xbf16>" not in out and "Flex" not in out  # no converter op dump
    report = json.loads((tmp_path / "x" / "bf16-all" / ex.REPORT_FILE).read_text())
    rows = {row["format"]: row for row in report["artifacts"]}
    assert set(rows) == set(ex.FORMATS)
    for fmt in ex.TFLITE_FORMATS:
        assert rows[fmt]["top1_agreement"] >= 0.9, fmt
        assert not any("bf16" in op.lower() or "flex" in op.lower() for op in rows[fmt]["ops"])
