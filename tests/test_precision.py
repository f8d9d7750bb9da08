"""`--precision`: auto's choice by CPU features, printed and recorded; a bf16 run end to end."""

import dataclasses
import json

import keras
import numpy as np
import pytest
from training_helpers import CLASSES, TINY, make_image_folder

from keras_googlenet._internal.environment import accelerator, auto_precision, cpu
from training import precision
from training.cifar import main
from training.config import TrainConfig, default_model

pytestmark = pytest.mark.slow  # trains and times runs in both precisions

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
    saved = json.loads((tmp_path / "runs" / "auto" / "config.json").read_text())
    assert f", {saved['precision']} ({saved['precision_reason']}), " in first
    backend, gpu = accelerator()
    policy, reason = auto_precision(backend, gpu, cpu()[1])
    if policy == "mixed_bfloat16" and gpu is None:  # measured on the run's own model
        assert "x float32" in saved["precision_reason"] and "measured" in saved["precision_reason"]
    else:
        assert (saved["precision"], saved["precision_reason"]) == (policy, f"auto: {reason}")
    # An explicit --precision has no reason, and its line shows just the policy.
    assert TrainConfig(precision="float32").resolve().precision_text == "float32"


def _bf16_by_rule(tmp_path, **changes):
    """A resolved config as auto leaves it on a CPU with bf16 units, before measuring."""
    values = {"precision": "mixed_bfloat16", "precision_reason": "auto: CPU has avx512_bf16",
              **changes}
    return dataclasses.replace(
        TrainConfig(runs_dir=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"),
                    precision="float32").resolve(), **values)


@pytest.mark.parametrize("float32_s, bf16_s, policy", [
    (1.0, 0.65, "mixed_bfloat16"), (1.0, 1.45, "float32"), (1.0, 0.98, "float32"),
    (1.05, 1.0, "mixed_bfloat16"),
])
def test_bf16_is_kept_only_when_measured_faster_beyond_noise(float32_s, bf16_s, policy):
    chosen, reason = precision.decide(float32_s, bf16_s)
    assert chosen == policy and reason.startswith("auto: ")
    assert f"{float32_s / bf16_s:.2f}x float32" in reason


def test_the_measurement_is_cached_per_cpu_and_network(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_GOOGLENET_CACHE", str(tmp_path / "cache"))
    calls = []

    def measure(config):
        calls.append(config.model.width)
        return 1.0, 1.0 / (1.5 if config.model.width == 0.5 else 0.8)

    first = precision.calibrate(_bf16_by_rule(tmp_path, model=default_model(width=0.5)),
                                measure_fn=measure)
    again = precision.calibrate(_bf16_by_rule(tmp_path, model=default_model(width=0.5)),
                                measure_fn=measure)
    other = precision.calibrate(_bf16_by_rule(tmp_path, model=default_model(width=1.0)),
                                measure_fn=measure)
    assert calls == [0.5, 1.0]  # the second run of the same network measured nothing
    assert first.precision == again.precision == "mixed_bfloat16"
    assert "1.50x float32" in first.precision_reason and "cached in" in again.precision_reason
    assert other.precision == "float32" and "0.80x float32" in other.precision_reason
    cache = json.loads((tmp_path / "cache" / precision.CACHE_FILE).read_text())
    assert len(cache) == 2 and all("avx512" in key or "cpu" in key for key in cache)
    # Not measured: an explicit precision, a GPU's choice, a float32 choice by rule.
    explicit = dataclasses.replace(first, precision_reason=None)
    assert precision.calibrate(explicit, measure_fn=measure) is explicit
    gpu = _bf16_by_rule(tmp_path, precision_reason="auto: GPU compute capability 9 >= 8.0")
    assert precision.calibrate(gpu, measure_fn=measure) is gpu
    by_rule = _bf16_by_rule(tmp_path, precision="float32",
                            precision_reason="auto: CPU has no bf16 units (amx_bf16 or ...)")
    assert precision.calibrate(by_rule, measure_fn=measure) is by_rule
    assert calls == [0.5, 1.0]


def test_a_resumed_auto_run_keeps_the_precision_it_started_with(tmp_path):
    started = _bf16_by_rule(tmp_path, precision="float32",
                            precision_reason="auto: CPU has bf16 units, but ...")
    run_dir = tmp_path / "runs" / started.name
    run_dir.mkdir(parents=True)
    started.save(run_dir / "config.json")
    resumed = precision.calibrate(_bf16_by_rule(tmp_path),
                                  measure_fn=lambda c: pytest.fail("measured again"))
    assert (resumed.precision, resumed.precision_reason) == (
        "float32", "auto: CPU has bf16 units, but ...")
    assert resumed.resume_differences(started) == []


def test_bad_data_stops_a_run_before_the_measurement(tmp_path, monkeypatch):
    from training import trainer
    from training.data import DataError

    calibrated = []
    monkeypatch.setattr(trainer, "calibrate", lambda config: calibrated.append(config) or config)
    (tmp_path / "data" / "images").mkdir(parents=True)  # no train/ folder
    config = TrainConfig(data_dir=str(tmp_path / "data"), runs_dir=str(tmp_path / "runs"),
                         cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="has no train/ folder"):
        trainer.train(config)
    assert calibrated == [] and not (tmp_path / "runs").exists()


@pytest.mark.backends("tensorflow")
def test_the_measurement_times_both_precisions_of_the_run_model(tmp_path):
    config = _bf16_by_rule(tmp_path, model=default_model(width=0.0625), image_size=16,
                           batch_size=4)
    float32_s, bf16_s = precision.measure(config, steps=1, warmup=1)
    assert 0 < float32_s < 60 and 0 < bf16_s < 60
    assert keras.config.dtype_policy().name == "float32"  # left as it found it


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
