"""Smoke tests of the benchmarks: tiny grids, the JSON they write, the
PyTorch reference's parameter count. No timing assertions.

The command-line benchmarks run as subprocesses, each on the first test that
reads its result (`training_helpers.BenchmarkRuns`), among them:

- `train_throughput --quick` on the current Keras backend (TensorFlow in CI), and
  on JAX in bf16 with TensorFlow made unimportable (the GPU sessions' command);
- `torch_reference --quick` with Keras on the torch backend and TensorFlow made
  unimportable, which checks that the benchmarks run without TensorFlow (the
  JAX-only GPU set-up) and keeps the test fast;
- `inference_latency --quick` (TensorFlow: SavedModel and all four TFLite files);
- `android_peers --quick` and `precision_calibration --quick`.
"""

import json
import math
import os
import sys

import pytest
import torch  # CI installs torch==2.13.0 (.ci/run); a missing torch fails these tests
from training_helpers import CHEAP_XLA_FLAGS, BenchmarkRuns

pytestmark = pytest.mark.slow  # every test reads benchmark runs in subprocesses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


#: The augmented-batches row of an input-pipeline JSON, for the JAX run's comparison.
PIPELINE_ROW = {"stage": "augmented training batches", "pipeline": "numpy",
                "images_per_second": 40_000.0}


def _is_positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The quick benchmark commands (`BenchmarkRuns`: each runs on the first test
    that asks for its result)."""
    tmp = tmp_path_factory.mktemp("bench")
    # An input-pipeline result for the JAX run to compare with (its own run of
    # benchmarks.input_pipeline is what test_training_benchmark.py checks).
    (tmp / "pipeline.json").write_text(json.dumps({"results": [PIPELINE_ROW]}))
    no_tf = tmp / "no_tensorflow"
    (no_tf / "tensorflow").mkdir(parents=True)
    (no_tf / "tensorflow" / "__init__.py").write_text(
        "raise ImportError('TensorFlow is hidden by tests/test_benchmarks.py')\n")
    # OpenMP's threads: tests/conftest.py shares the cores between the workers.
    base = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    base.pop("KERAS_BACKEND", None)
    commands = {
        "train_throughput": (["benchmarks.train_throughput", "--quick",
                              "--pipeline-json", str(tmp / "none.json"),
                              "--output", str(tmp / "train.json")], base, tmp / "train.json", ()),
        "torch_reference": (["benchmarks.torch_reference", "--quick",
                             "--keras-backends", "torch", "--output", str(tmp / "torch.json")],
                            dict(base, PYTHONPATH=f"{no_tf}{os.pathsep}{ROOT}",
                                 KERAS_BACKEND="torch"), tmp / "torch.json", ()),
        # The GPU sessions' command (JAX, bf16, utilisation), shrunk, with TensorFlow
        # hidden: the benchmark must run where TensorFlow is not installed.
        "train_throughput_jax": (["benchmarks.train_throughput",
                                  "--backends", "jax", "--jit", "on",
                                  "--precisions", "mixed_bfloat16", "--inputs", "cifar:32",
                                  "--widths", "0.125", "--batch-sizes", "8", "--steps", "2",
                                  "--warmup-steps", "1", "--repeats", "1",
                                  "--peak-tflops", "0.3",
                                  "--pipeline-json", str(tmp / "pipeline.json"),
                                  "--output", str(tmp / "jax.json")],
                                 dict(base, PYTHONPATH=f"{no_tf}{os.pathsep}{ROOT}",
                                      KERAS_BACKEND="jax", XLA_FLAGS=CHEAP_XLA_FLAGS),
                                 tmp / "jax.json", ()),
        "inference_latency": (["benchmarks.inference_latency", "--quick",
                               "--output", str(tmp / "latency.json")], base,
                              tmp / "latency.json", ()),
        "android_peers": (["benchmarks.android_peers", "--quick",
                           "--output", str(tmp / "peers.json")], base, tmp / "peers.json", ()),
        "precision_calibration": (["benchmarks.precision_calibration",
                                   "--quick", "--output", str(tmp / "calibration.json")], base,
                                  tmp / "calibration.json", ()),
    }
    return BenchmarkRuns(commands)


def _check_common(doc, name):
    assert doc["benchmark"] == name
    env = doc["environment"]
    assert env["cpu_count"] >= 1 and env["cpu"]
    assert env["versions"]["keras"]
    start, end = doc["load_average"]["start"], doc["load_average"]["end"]
    assert len(start) == 3 and len(end) == 3
    assert doc["command"].startswith(f"python -m benchmarks.{name}")


def _check_training_row(row):
    assert row["status"] == "ok", row.get("error")
    for key in ("images_per_second", "step_time_s", "fit_images_per_second",
                "achieved_tflops", "train_flops_per_image", "macs_per_image", "params",
                "setup_s"):
        assert _is_positive(row[key]), (key, row[key])
    assert row["train_flops_per_image"] == 6 * row["macs_per_image"]
    assert all(_is_positive(v) for v in row["images_per_second_repeats"])
    assert row["repeats"] == len(row["images_per_second_repeats"]) >= 1
    assert row["utilisation"] is None  # no --peak-tflops given


def test_train_throughput_quick(runs):
    code, output, doc = runs.result("train_throughput")
    assert code == 0, output[-3000:]
    _check_common(doc, "train_throughput")
    assert "6 x forward multiply-adds" in doc["flop_convention"]
    (row,) = doc["results"]
    _check_training_row(row)
    assert (row["framework"], row["stem"], row["image_size"], row["width"], row["batch_size"]) \
        == ("keras", "cifar", 32, 0.125, 8)
    assert row["backend"] == "tensorflow" and row["jit"] is False
    # The CIFAR GoogLeNet at width 0.125: 23,296,256 multiply-adds, 167,378 parameters.
    assert row["macs_per_image"] == 23_296_256 and row["params"] == 167_378
    assert doc["input_pipeline"]["available"] is False
    assert "| setting | images/s |" in output


def test_train_throughput_on_jax_in_bfloat16_without_tensorflow(runs):
    code, output, doc = runs.result("train_throughput_jax")
    assert code == 0, output[-3000:]
    _check_common(doc, "train_throughput")
    (row,) = doc["results"]
    assert row["status"] == "ok", row.get("error")
    for key in ("images_per_second", "achieved_tflops", "macs_per_image"):
        assert _is_positive(row[key]), (key, row[key])
    assert (row["backend"], row["jit"], row["precision"]) == ("jax", True, "mixed_bfloat16")
    assert row["worker_env"]["KERAS_BACKEND"] == "jax"
    # Utilisation = achieved FLOP/s / the given peak (0.3 TFLOP/s).
    assert row["utilisation"] == pytest.approx(row["achieved_tflops"] / 0.3)
    assert row["macs_per_image"] == 23_296_256  # same network as the TensorFlow row
    # The input pipeline's images/s against the model's, from the given JSON.
    pipeline = doc["input_pipeline"]
    assert pipeline["available"] is True
    [comparison] = pipeline["comparisons"]
    assert comparison["pipeline"] == "augmented training batches / numpy"
    assert comparison["ratio"] == pytest.approx(40_000.0 / row["images_per_second"])


def test_torch_reference_quick_without_tensorflow(runs):
    code, output, doc = runs.result("torch_reference")
    assert code == 0, output[-3000:]
    _check_common(doc, "torch_reference")
    rows = {r["framework"]: r for r in doc["results"]}
    assert set(rows) == {"keras", "torch"}
    for row in rows.values():
        _check_training_row(row)
    assert rows["keras"]["backend"] == "torch"
    assert rows["keras"]["worker_env"]["KERAS_BACKEND"] == "torch"
    # The two implementations are the same network: same parameters, same FLOPs.
    assert rows["torch"]["params"] == rows["keras"]["params"] == 167_378
    assert rows["torch"]["macs_per_image"] == rows["keras"]["macs_per_image"]
    assert _is_positive(doc["summary"]["keras_over_torch"])


def test_inference_latency_quick(runs):
    code, output, doc = runs.result("inference_latency")
    assert code == 0, output[-3000:]
    _check_common(doc, "inference_latency")
    rows = doc["results"]
    artifacts = {r["artifact"] for r in rows}
    assert {"Keras", "SavedModel", "model_float32.tflite", "model_float16.tflite",
            "model_dynamic.tflite", "model_int8.tflite"} <= artifacts
    assert {r["batch"] for r in rows if r["artifact"] == "Keras"} == {1, 4}
    assert any(r["batch"] == 1 for r in rows if r["artifact"] == "model_int8.tflite")
    for r in rows:
        for key in ("latency_ms", "ms_per_image", "images_per_second"):
            assert _is_positive(r[key]), (r["artifact"], key, r[key])
        if r["artifact"].endswith(".tflite"):
            assert r["threads"] == 1 and _is_positive(r["size_bytes"])
    assert doc["model"]["multiply_adds_per_image"] > 0


def test_android_peers_quick(runs):
    code, output, doc = runs.result("android_peers")
    assert code == 0, output[-3000:]
    _check_common(doc, "android_peers")
    rows = {r["model"]: r for r in doc["results"]}
    assert set(rows) == {"GoogLeNet w0.125", "MobileNetV3Small"}
    for r in rows.values():
        assert r["format"] == "int8" and r["full_integer"] is True, r
        assert _is_positive(r["size_bytes"]) and _is_positive(r["latency_ms"]["1"])
        assert isinstance(r["gpu_delegate"], bool)
    # Our width-0.125 CIFAR network without its auxiliary heads (23,296,256 with them).
    assert rows["GoogLeNet w0.125"]["multiply_adds"] == 23_194_880
    assert rows["GoogLeNet w0.125"]["params"] == 96_798
    assert "| GoogLeNet w0.125 | int8 |" in output


def test_precision_calibration_quick(runs):
    code, output, doc = runs.result("precision_calibration")
    assert code == 0, output[-3000:]
    _check_common(doc, "precision_calibration")
    (row,) = doc["results"]
    assert (row["stem"], row["image_size"], row["width"], row["batch_size"]) == (
        "cifar", 16, 0.0625, 4)
    assert _is_positive(row["float32_s_per_step"][0]) and _is_positive(row["bf16_s_per_step"][0])
    assert row["auto_chooses"] == ("mixed_bfloat16" if row["speedup_median"] >= 1.05
                                   else "float32")
    assert "cifar:16:0.0625:4: bf16" in output


# ---- in-process checks --------------------------------------------------------


@pytest.mark.parametrize(
    "stem, size, classes, width, expected",
    [
        ("imagenet", 224, 1000, 1.0, 13_400_888),  # the pinned Keras count
        ("imagenet", 96, 1000, 1.0, 13_400_888),  # adaptive 4x4 aux pooling keeps it
        ("cifar", 32, 10, 0.125, 167_378),
    ],
)
def test_torch_googlenet_matches_keras(stem, size, classes, width, expected):
    import keras_googlenet
    from benchmarks.torch_googlenet import (build_torch_googlenet, count_macs,
                                            keras_style_param_count)

    config = keras_googlenet.GoogLeNetConfig(stem=stem, input_shape=(size, size, 3),
                                             classes=classes, width=width)
    model = build_torch_googlenet(config)
    keras_model = keras_googlenet.build_model(config)
    assert keras_style_param_count(model) == keras_model.count_params() == expected
    assert count_macs(model, size) == keras_googlenet.count_flops(keras_model)
    model.train()
    outputs = model(torch.zeros(2, 3, size, size, dtype=torch.uint8))
    assert [tuple(o.shape) for o in outputs] == [(2, classes)] * 3
    model.eval()
    assert len(model(torch.zeros(1, 3, size, size))) == 1  # no aux heads at inference


def test_grid_skips_what_is_not_measured():
    from benchmarks import train_throughput

    args = train_throughput.build_parser().parse_args(
        ["--backends", "tensorflow,jax,torch", "--inputs", "cifar:32", "--jit", "off,on",
         "--devices", "1,2", "--batch-sizes", "3", "--env", "", "--env",
         "TF_ENABLE_ONEDNN_OPTS=0"])
    cases, skipped = train_throughput.grid(args)
    measured = {(c["backend"], c["jit"], c["devices"], bool(c["env"])) for c in cases}
    # batch 3 does not split over 2 devices; JAX only with jit; torch only without.
    assert measured == {("tensorflow", False, 1, False), ("tensorflow", True, 1, False),
                        ("tensorflow", False, 1, True), ("tensorflow", True, 1, True),
                        ("jax", True, 1, False), ("jax", True, 1, True),
                        ("torch", False, 1, False), ("torch", False, 1, True)}
    assert len(cases) + len(skipped) == 3 * 2 * 2 * 2
    assert all(s["reason"] for s in skipped)


def test_unfused_batchnorm_is_the_before_case_on_tensorflow_only():
    import keras

    import keras_googlenet as kg
    from benchmarks import runners, train_throughput
    from benchmarks.cases import normalize_case

    args = train_throughput.build_parser().parse_args(
        ["--backends", "tensorflow,jax", "--inputs", "cifar:32", "--jit", "on",
         "--fused-batchnorm", "on,off"])
    cases, skipped = train_throughput.grid(args)
    assert {(c["backend"], c["fused_batchnorm"]) for c in cases} == {
        ("tensorflow", True), ("tensorflow", False), ("jax", True)}
    assert ["TensorFlow" in s["reason"] for s in skipped] == [True]
    with pytest.raises(ValueError, match="only differs on the Keras TensorFlow backend"):
        normalize_case(dict(framework="torch", fused_batchnorm=False))
    model = kg.GoogLeNet(stem="cifar", classes=10, width=0.125)
    runners.unfuse_batchnorm(model)
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(l.fused is False for l in bns)


def test_pipeline_figures_from_the_input_pipeline_json():
    from benchmarks.train_throughput import pipeline_figures

    doc = {"results": [
        {"stage": "decode files (once per run)", "pipeline": "PIL", "images_per_second": 9e4},
        {"stage": "augmented training batches", "pipeline": "tf.data", "images_per_second": 5e4},
        {"stage": "augmented training batches", "pipeline": "numpy", "images_per_second": 2e4},
    ]}
    figures = pipeline_figures(doc)
    assert [f["images_per_second"] for f in figures] == [5e4, 2e4]
    assert figures[0]["name"] == "augmented training batches / tf.data"
    assert pipeline_figures({"results": []}) == []


def test_a_missing_pipeline_json_is_measured_first_except_with_quick(tmp_path, monkeypatch):
    from benchmarks import train_throughput

    commands = []

    def run(command, **kwargs):  # stands in for `python -m benchmarks.input_pipeline`
        commands.append(command)
        (tmp_path / "p.json").write_text(json.dumps({"results": [PIPELINE_ROW]}))

    monkeypatch.setattr(train_throughput.subprocess, "run", run)
    path = str(tmp_path / "p.json")
    skipped = train_throughput.pipeline_comparison(path, [], run_if_missing=False)  # --quick
    assert commands == [] and skipped["available"] is False
    measured = train_throughput.pipeline_comparison(path, [], run_if_missing=True)
    assert commands == [[sys.executable, "-m", "benchmarks.input_pipeline", "--output", path]]
    assert measured["available"] is True and measured["pipelines"][0]["images_per_second"] == 4e4
    train_throughput.pipeline_comparison(path, [], run_if_missing=True)  # present: not again
    assert len(commands) == 1


def test_torch_reference_summary_pairs_the_unfused_batchnorm_row():
    from benchmarks.torch_reference import summarize

    def row(framework, label, ips, jit=False, fused=True):
        return dict(status="ok", framework=framework, label=label, jit=jit,
                    backend="tensorflow" if framework == "keras" else None,
                    fused_batchnorm=fused, images_per_second=ips,
                    images_per_second_repeats=[ips])

    before = row("keras", "before", 1.5, fused=False)
    torch_row = row("torch", "torch", 1.0)
    # Only a jit-on Keras row besides "before": no same-setting "after" to pair with.
    summary = summarize([row("keras", "jit on", 2.0, jit=True), before, torch_row])
    assert "fused_over_unfused_batchnorm_paired" not in summary
    assert summary["unfused_batchnorm_over_fastest_torch_paired"] == pytest.approx(1.5)
    summary = summarize([row("keras", "after", 1.8), before, torch_row])
    assert summary["fused_over_unfused_batchnorm_paired"] == pytest.approx(1.2)
    assert summary["fastest_keras"] == "after"


def test_bf16_profile_counts_onednn_kernels_by_kind_and_dtype():
    from benchmarks.bf16_profile import parse_verbose, summarize

    line = ("onednn_verbose,v1,primitive,exec,cpu,{kind},{impl},forward_training,"
            "src:{dt}::blocked:acdb::f0 dst:{dt}::blocked:acdb::f0,,alg,2.5")
    text = "\n".join([
        line.format(kind="convolution", impl="brg_conv_fwd:avx512_core", dt="f32"),  # warm-up
        "BF16_PROFILE_START",
        line.format(kind="convolution", impl="brg_conv_fwd:avx512_core_bf16", dt="bf16"),
        line.format(kind="convolution", impl="brg_conv_fwd:avx512_core_bf16", dt="bf16"),
        line.format(kind="convolution", impl="jit:avx512_core", dt="f32"),
        line.format(kind="batch_normalization", impl="nspc_bnorm:any", dt="bf16"),
        "BF16_PROFILE_END",
    ])
    counts, ms = parse_verbose(text)
    assert counts[("convolution", "brg_conv_fwd:avx512_core_bf16", "bf16")] == 2
    assert sum(counts.values()) == 4  # the warm-up line is outside the markers
    assert ms[("convolution", "brg_conv_fwd:avx512_core_bf16", "bf16")] == pytest.approx(5.0)
    summary = summarize(counts, ms, step_ms=10.0, steps=1)
    assert summary["convolution_bf16_share"] == pytest.approx(2 / 3)
    assert summary["batch_normalization_bf16_share"] == 1.0
    # 4 x 2.5 ms of a 10 ms step ran in oneDNN, 7.5 ms of it in convolutions.
    assert summary["onednn_ms_per_step_by_kind"] == {"convolution": 7.5,
                                                     "batch_normalization": 2.5}
    assert summary["onednn_ms_over_step"] == pytest.approx(1.0)
    assert summarize(counts, ms, step_ms=10.0, steps=2)["onednn_ms_over_step"] == \
        pytest.approx(0.5)


def test_torch_case_precision_is_float32_or_bf16_autocast():
    from benchmarks.cases import normalize_case

    case = normalize_case({"framework": "torch", "precision": "mixed_bfloat16"})
    assert "bf16 autocast" in case["label"]
    with pytest.raises(ValueError, match="mixed_float16"):
        normalize_case({"framework": "torch", "precision": "mixed_float16"})


def test_run_report_finds_the_first_epoch_and_wall_time_at_each_level(tmp_path, capsys):
    from benchmarks import run_report

    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    rows = [(0, 0.60, 100.0, 150.0), (1, 0.86, 205.5, 160.0), (2, 0.91, 310.0, 170.0)]
    (run / "history.csv").write_text("epoch,val_main_accuracy,elapsed_s,images_per_second\n" + "".join(
        f"{e},{a},{t},{s}\n" for e, a, t, s in rows))
    (run / "results.json").write_text(json.dumps(
        {"val_accuracy": {"main": 0.91}, "num_train": 45000, "num_val": 5000}))
    (run / "config.json").write_text(json.dumps({"precision": "mixed_bfloat16",
                                                 "precision_reason": "auto: measured"}))
    (run / "model_config.json").write_text("{}")
    (run / "curves.png").write_bytes(b"png")
    out = tmp_path / "out"
    assert run_report.main([str(run), "--output-dir", str(out), "--command", "python -m x",
                            "--levels", "0.85,0.9,0.95"]) == 0
    report = json.loads((out / "run_report.json").read_text())
    assert report["levels"] == {"0.85": {"epoch": 2, "wall_time_s": 205.5},
                                "0.9": {"epoch": 3, "wall_time_s": 310.0}, "0.95": None}
    assert (report["epochs"], report["wall_time_s"], report["train_images_per_second_median"]) \
        == (3, 310.0, 160.0)
    assert report["precision"] == "mixed_bfloat16" and report["command"] == "python -m x"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*run_report.RUN_FILES, "lscpu.txt", "run_report.json"])
    table = capsys.readouterr().out
    assert "| 85% | 2 | 0:03:26 |" in table and "| 95% | not reached |" in table
