"""Tests for `python -m training.export` (a run folder or `.keras` file to SavedModel + TFLite).

Every artifact is run (SavedModel through `tf.saved_model.load`, TFLite through
the LiteRT interpreter) and its numbers are compared with the Keras model; bad
input gives one line on stderr, a non-zero exit status, and nothing written.
The tiny model and images are in `export_helpers.py`.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
from export_helpers import (  # noqa: F401 (fixtures)
    CLASSES,
    SIZE,
    assert_other_head,
    image_folder,
    keras_probs,
    listing,
    make_images,
    model_file,
    tiny_config,
    workdir,
    write_folder,
)

from keras_googlenet import GoogLeNet
from keras_googlenet import export as ex
from training import export as run_export

pytestmark = [pytest.mark.backends("tensorflow"), pytest.mark.slow]  # slow: every test converts TFLite files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_run(workdir, model, name, *, model_config=None):
    """A run folder as `training.cifar` writes it, over a small image-folder dataset."""
    from training.config import TrainConfig, default_model

    data = os.path.join(workdir, "data")
    if not os.path.isdir(data):
        x, y = make_images(120, seed=7)
        write_folder(os.path.join(data, "train"), x, y)
    config = TrainConfig(
        name=name, data="folder", data_dir=data, image_size=SIZE,
        model=default_model(stem="cifar", width=0.125), val_fraction=0.25, seed=0, epochs=1,
    ).resolve()
    run = os.path.join(workdir, "runs", name)
    os.makedirs(run)
    config.save(os.path.join(run, "config.json"))
    model.save(os.path.join(run, "model.keras"))
    with open(os.path.join(run, "labels.txt"), "w") as f:
        f.write("".join(c + "\n" for c in CLASSES))
    if model_config is not None:
        model_config.save(os.path.join(run, "model_config.json"))
    return run


@pytest.fixture(scope="module")
def run_dir(workdir, model):
    return make_run(workdir, model, "tiny")


@pytest.fixture(scope="module")
def full_export(workdir, run_dir):
    """All five formats of the run folder (its own calibration and held-out data)."""
    out = os.path.join(workdir, "saved_models")
    report = run_export.export_run(run_dir, "tiny", export_dir=out, repeats=3,
                                   log=lambda msg: None)
    return report, os.path.join(out, "tiny"), ex.format_report(report)


# ---------------------------------------------------------------------------
# Full export of a run folder: every artifact against Keras
# ---------------------------------------------------------------------------


def test_full_export_writes_every_file(full_export):
    report, path, table = full_export
    assert listing(path) == sorted(
        [
            "assets", "export_report.json", "export_report.png", "fingerprint.pb", "labels.txt",
            "model_dynamic.tflite", "model_float16.tflite", "model_float32.tflite",
            "model_int8.tflite", "saved_model.pb", "variables",
        ]
    )
    assert listing(os.path.dirname(path)) == ["tiny"]
    with open(os.path.join(path, "labels.txt")) as f:
        assert f.read().splitlines() == CLASSES
    # The printed markdown table has one row per artifact.
    for name in ("SavedModel (TF)", "model_float32.tflite", "model_int8.tflite"):
        assert f"| {name} |" in table


def test_each_file_is_checked_for_the_gpu_delegate_and_integer_only(full_export):
    """TensorFlow's analyzer on every file; int8 is full-integer (uint8 in and out)."""
    report, path, table = full_export
    rows = {row["format"]: row for row in report["artifacts"] if row["format"] != "saved_model"}
    for fmt, row in rows.items():
        assert row["gpu_delegate"]["compatible"] is True and row["gpu_delegate"]["flagged"] == []
        assert "Analyzer" in row["gpu_delegate"]["checked_by"]
        assert row["integer"]["full_integer"] is (fmt == "int8"), fmt
    assert rows["int8"]["integer"] == {"full_integer": True, "float_tensors": 0,
                                       "input": "uint8", "output": "uint8"}
    assert rows["float32"]["integer"]["float_tensors"] > 0
    assert "| GPU delegate | full integer |" in table and "| yes | yes |" in table


def test_the_gpu_verdict_reads_what_the_analyzer_flags(monkeypatch, tmp_path):
    """A file with an op the GPU delegate lacks is reported as such, op named."""
    import tensorflow as tf

    from keras_googlenet.export import analysis

    def analyze(model_path, gpu_compatibility):
        print("GPU COMPATIBILITY WARNING: Not supported op CUMSUM\n"
              "GPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues")

    monkeypatch.setattr(tf.lite.experimental.Analyzer, "analyze", analyze)
    verdict = analysis.gpu_compatibility(tmp_path / "m.tflite")
    assert verdict["compatible"] is False and "Not supported op CUMSUM" in verdict["flagged"]
    line = analysis.gpu_line("m.tflite", verdict)
    assert "\n" not in line and "NOT fully on the GPU delegate" in line and "CUMSUM" in line


def _held_out(run_dir):
    from training.config import TrainConfig
    from training.data import load_arrays

    _, _, x_val, y_val, names = load_arrays(TrainConfig.load(os.path.join(run_dir, "config.json")))
    assert names == CLASSES
    return x_val, y_val


# Per format: max abs probability difference allowed, min top-1 agreement.
TOLERANCE = {"float32": (1e-4, 1.0), "float16": (1e-2, 0.97), "dynamic": (0.1, 0.9),
             "int8": (0.1, 0.9)}


@pytest.mark.parametrize("fmt", ex.TFLITE_FORMATS)
def test_tflite_artifact_matches_keras(full_export, run_dir, model, fmt):
    _, path, _ = full_export
    file = os.path.join(path, f"model_{fmt}.tflite")
    x_val, y_val = _held_out(run_dir)
    reference = keras_probs(model, x_val)

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=file, num_threads=1)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    (outp,) = interpreter.get_output_details()
    assert list(inp["shape"]) == [1, SIZE, SIZE, 3]
    assert inp["dtype"] == np.uint8
    # Raw 0-255 pixels, no input scaling needed: plain uint8, or for the full-integer
    # int8 file a quantized uint8 whose scale 1 and zero point 0 mean the same.
    assert inp["quantization"] == ((1.0, 0) if fmt == "int8" else (0.0, 0))
    assert list(outp["shape"]) == [1, 3]
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["image"], "outputs": ["probabilities"]}
    }

    probs = []
    for image in x_val:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        probs.append(interpreter.get_tensor(outp["index"])[0])
    probs = np.array(probs)
    if fmt == "int8":
        assert outp["dtype"] == np.uint8
        scale, zero_point = outp["quantization"]
        assert (scale, zero_point) == (1 / 256, 0)
        probs = (probs.astype(np.float64) - zero_point) * scale
    else:
        assert outp["dtype"] == np.float32
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)

    max_diff, min_agreement = TOLERANCE[fmt]
    agreement = np.mean(probs.argmax(-1) == reference.argmax(-1))
    assert np.abs(probs - reference).max() <= max_diff
    assert agreement >= min_agreement

    # The report's numbers are the ones measured here.
    with open(os.path.join(path, "export_report.json")) as f:
        report = json.load(f)
    (entry,) = [a for a in report["artifacts"] if a["format"] == fmt]
    assert entry["size_bytes"] == os.path.getsize(file)
    assert report["sample"]["images"] == len(x_val)
    assert report["sample"]["labelled"] is True
    assert entry["top1_agreement"] == pytest.approx(agreement)
    assert entry["max_abs_prob_diff"] == pytest.approx(np.abs(probs - reference).max(), abs=1e-5)
    assert entry["accuracy"] == pytest.approx(np.mean(probs.argmax(-1) == y_val))
    assert entry["latency_ms"] > 0
    assert not [op for op in ex.tflite_ops(open(file, "rb").read()) if op.startswith("CUSTOM")]


def test_report_saved_model_and_sizes(full_export, run_dir, model):
    _, path, _ = full_export
    with open(os.path.join(path, "export_report.json")) as f:
        report = json.load(f)
    assert [a["format"] for a in report["artifacts"]] == list(ex.FORMATS)
    assert report["head"] == "main"
    assert report["input"] == {
        "name": "image", "shape": [1, SIZE, SIZE, 3], "dtype": "uint8",
        "meaning": report["input"]["meaning"],
    }
    assert report["output"]["name"] == "probabilities"
    assert report["output"]["shape"] == [1, 3]
    assert report["latency"]["threads"] == 1
    x_val, y_val = _held_out(run_dir)
    assert report["calibration"]["images"] == 120 - len(x_val)  # the run's whole training split
    reference = keras_probs(model, x_val)
    assert report["keras"]["accuracy"] == pytest.approx(np.mean(reference.argmax(-1) == y_val))
    saved = report["artifacts"][0]
    assert saved["top1_agreement"] == 1.0
    assert saved["max_abs_prob_diff"] < 1e-5
    sizes = {a["format"]: a["size_bytes"] for a in report["artifacts"]}
    assert sizes["int8"] < sizes["float32"]
    assert sizes["dynamic"] < sizes["float32"]
    assert sizes["float16"] < sizes["float32"]


def test_run_model_config_is_copied_beside_the_export(workdir, model, tmp_path, capsys):
    from keras_googlenet import GoogLeNetConfig

    run = make_run(workdir, model, "with_config", model_config=tiny_config())
    assert run_export.main([run, "--name", "cfg", "--export-dir", str(tmp_path),
                            "--formats", "saved_model", "--repeats", "1"]) == 0
    assert "model_config.json" in listing(tmp_path / "cfg")
    assert GoogLeNetConfig.load(tmp_path / "cfg") == tiny_config()
    report = json.loads((tmp_path / "cfg" / "export_report.json").read_text())
    assert report["model_config"] == "model_config.json"
    assert report["sample"]["source"].startswith("held-out validation split of run")
    assert "Wrote " in capsys.readouterr().out


# ---------------------------------------------------------------------------
# Other sources and heads
# ---------------------------------------------------------------------------


def test_keras_file_with_calibration_folder_aux1_head(model_file, model, image_folder, images,
                                                      tmp_path, capsys):
    x, y = images
    rc = run_export.main([
        model_file, "--name", "early", "--export-dir", str(tmp_path), "--head", "aux1",
        "--formats", "float32,int8", "--calibration-data", image_folder,
        "--eval-data", image_folder, "--repeats", "2",
    ])
    assert rc == 0, capsys.readouterr().err
    path = tmp_path / "early"
    assert listing(path) == [
        "export_report.json", "export_report.png", "labels.txt", "model_float32.tflite",
        "model_int8.tflite",
    ]
    # No labels in a bare .keras file: numbered labels.
    assert (path / "labels.txt").read_text() == "0\n1\n2\n"
    report = json.loads((path / "export_report.json").read_text())
    assert report["head"] == "aux1"
    assert 0 < report["flops"] < report["flops_main"]
    assert report["calibration"]["images"] == len(x)
    # Labels "0", "1", "2" do not name the class folders: agreement only.
    assert report["sample"]["labelled"] is False

    runner = ex.LiteRTClassifier(str(path / "model_float32.tflite"))
    probs = runner.predict(x[:20])
    np.testing.assert_allclose(probs, keras_probs(model, x[:20], head="aux1"), atol=1e-4)
    assert_other_head(probs, keras_probs(model, x[:20], head="main"))
    int8 = ex.LiteRTClassifier(str(path / "model_int8.tflite")).predict(x[:20])
    assert np.abs(int8 - probs).max() < 0.15


# ---------------------------------------------------------------------------
# Bad input: one-line error, non-zero exit, nothing written
# ---------------------------------------------------------------------------


def _fails(argv, capsys, match, status=None):
    rc = run_export.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    if status is not None:
        assert rc == status
    assert err and err[-1].startswith("error: ")
    assert match in err[-1], err[-1]
    return err[-1]


def test_missing_model(tmp_path, capsys):
    _fails([str(tmp_path / "nope.keras"), "--name", "x", "--export-dir", str(tmp_path / "o")],
           capsys, "Model not found")
    assert not (tmp_path / "o" / "x").exists()


def test_unreadable_model(tmp_path, capsys):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"this is not a keras archive")
    _fails([str(bad), "--name", "x", "--export-dir", str(tmp_path / "o")], capsys,
           "Could not load model")
    assert not (tmp_path / "o" / "x").exists()


def test_run_folder_without_model(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    _fails([str(tmp_path / "run"), "--name", "x", "--export-dir", str(tmp_path / "o")], capsys,
           "has no model.keras")


def test_model_without_main_output(tmp_path, capsys):
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    net = keras.Model(inputs, keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(inputs)))
    net.save(tmp_path / "nomain.keras")
    _fails([str(tmp_path / "nomain.keras"), "--name", "x", "--export-dir", str(tmp_path / "o"),
            "--formats", "float32"], capsys, "no 'main' output")
    features = GoogLeNet(stem="cifar", include_top=False, width=0.125, input_shape=(SIZE, SIZE, 3))
    features.save(tmp_path / "features.keras")
    _fails([str(tmp_path / "features.keras"), "--name", "x", "--export-dir", str(tmp_path / "o"),
            "--formats", "float32"], capsys, "no 'main' output")
    assert not (tmp_path / "o").exists()


def test_int8_without_calibration_images(model_file, tmp_path, capsys):
    _fails([model_file, "--name", "x", "--export-dir", str(tmp_path)], capsys,
           "int8 export needs calibration images")
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails([model_file, "--name", "x", "--export-dir", str(tmp_path), "--formats", "int8",
            "--calibration-data", str(empty)], capsys, "No images")
    assert listing(tmp_path) == ["empty"]


def test_existing_export_needs_overwrite(model_file, tmp_path, capsys):
    dest = tmp_path / "x"
    dest.mkdir()
    (dest / "model_float32.tflite").write_bytes(b"old")
    argv = [model_file, "--name", "x", "--export-dir", str(tmp_path), "--formats", "float32",
            "--repeats", "1"]
    _fails(argv, capsys, "--overwrite")
    assert (dest / "model_float32.tflite").read_bytes() == b"old"

    assert run_export.main(argv + ["--overwrite"]) == 0
    assert listing(dest) == ["export_report.json", "export_report.png", "labels.txt",
                             "model_float32.tflite"]
    assert (dest / "model_float32.tflite").read_bytes()[4:8] == b"TFL3"
    assert listing(tmp_path) == ["x"]


def test_bad_format_and_head(model_file, tmp_path, capsys):
    _fails([model_file, "--name", "x", "--export-dir", str(tmp_path), "--formats", "onnx"],
           capsys, "Unknown format")
    # A bad flag value is a usage error: exit status 2, one line (no usage dump).
    _fails([model_file, "--name", "x", "--head", "aux3"], capsys, "aux3", status=2)
    _fails([model_file, "--name", "x", "--repeats", "0"], capsys, "--repeats must be >= 1",
           status=2)


def test_bad_labels_file_and_metadata_flags(workdir, model, tmp_path, capsys):
    run = make_run(workdir, model, "badlabels")
    labels = os.path.join(run, "labels.txt")
    argv = [run, "--name", "x", "--export-dir", str(tmp_path), "--formats", "float32"]
    for content, match in [(b"a_red\n\nc_blue\n", "has an empty line 2"),
                           (b"a_red\nb_gr\xfcn\nc_blue\n", "is not UTF-8 text"),
                           (b"a_red\nb_green\n", "Got 2 labels for a model with 3 classes")]:
        with open(labels, "wb") as f:
            f.write(content)
        _fails(argv, capsys, match, status=1)
    _fails(argv + ["--no-metadata", "--model-author", "me"], capsys,
           "--model-author cannot be combined with --no-metadata", status=2)
    assert listing(tmp_path) == []


def test_command_line_exit_status(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "training.export", str(tmp_path / "missing.keras"),
         "--name", "x", "--export-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: Model not found")
    assert result.stdout == ""
