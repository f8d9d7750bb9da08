"""Tests for `python -m keras_googlenet.export` (SavedModel + TFLite export).

Every artifact is run (SavedModel through `tf.saved_model.load`, TFLite through
the LiteRT interpreter) and its numbers are compared with the Keras model. The
models are tiny (CIFAR stem, width 0.125, 16x16 inputs, 3 classes), briefly
fitted on easy synthetic images so that their predictions are confident and
top-1 agreement is a meaningful check.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402
from PIL import Image  # noqa: E402

from keras_googlenet import GoogLeNet  # noqa: E402
from keras_googlenet import export as ex  # noqa: E402

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="export needs the TensorFlow backend"
)

SIZE = 16
CLASSES = ["a_red", "b_green", "c_blue"]  # sorted, as class folders are read
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_images(n, seed):
    """Noise images whose brightest channel is the class (easy to learn)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    x = rng.integers(0, 130, (n, SIZE, SIZE, 3))
    x[np.arange(n), :, :, y] += 125
    # Some full-range pixels, so calibration sees both 0 and 255.
    x[:, 0, 0, :] = rng.choice([0, 255], (n, 3))
    return x.astype(np.uint8), y


def softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def keras_probs(model, x, head="main"):
    outputs = model.predict(x.astype("float32"), verbose=0, batch_size=64)
    index = list(model.output_names).index(head)
    return softmax(np.asarray(outputs[index], np.float64))


def assert_other_head(probs, other):
    """`probs` are clearly not `other`'s (compared as log-probabilities)."""
    log = lambda p: np.log(np.clip(np.asarray(p, np.float64), 1e-12, 1.0))
    assert np.abs(log(probs) - log(other)).max() > 0.5


def write_folder(root, x, y):
    for i, (image, label) in enumerate(zip(x, y)):
        folder = os.path.join(root, CLASSES[label])
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(image).save(os.path.join(folder, f"{i:04d}.png"))


def listing(path):
    return sorted(os.listdir(path))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    m = GoogLeNet(stem="cifar", classes=len(CLASSES), width=0.125, input_shape=(SIZE, SIZE, 3))
    m.compile(
        keras.optimizers.Adam(3e-3),
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * 3,
    )
    x, y = make_images(256, seed=0)
    m.fit(x.astype("float32"), (y, y, y), epochs=2, batch_size=32, verbose=0)
    return m


@pytest.fixture(scope="module")
def images():
    return make_images(90, seed=5)


@pytest.fixture(scope="module")
def model_file(workdir, model):
    path = os.path.join(workdir, "tiny.keras")
    model.save(path)
    return path


@pytest.fixture(scope="module")
def image_folder(workdir, images):
    root = os.path.join(workdir, "images")
    write_folder(root, *images)
    return root


@pytest.fixture(scope="module")
def run_dir(workdir, model):
    """A run folder as `training.cifar` writes it, over a small image-folder dataset."""
    from training.config import TrainConfig

    data = os.path.join(workdir, "data")
    x, y = make_images(120, seed=7)
    write_folder(os.path.join(data, "train"), x, y)
    config = TrainConfig(
        name="tiny", data="folder", data_dir=data, image_size=SIZE, stem="cifar",
        width=0.125, val_fraction=0.25, seed=0, epochs=1,
    ).resolve()
    run = os.path.join(workdir, "runs", "tiny")
    os.makedirs(run)
    config.save(os.path.join(run, "config.json"))
    model.save(os.path.join(run, "model.keras"))
    with open(os.path.join(run, "labels.txt"), "w") as f:
        f.write("".join(c + "\n" for c in CLASSES))
    return run


@pytest.fixture(scope="module")
def full_export(workdir, run_dir):
    """All five formats of the run folder (its own calibration and held-out data)."""
    out = os.path.join(workdir, "saved_models")
    report = ex.export(run_dir, "tiny", export_dir=out, repeats=3, log=lambda msg: None)
    return report, os.path.join(out, "tiny"), ex.format_report(report)


# ---------------------------------------------------------------------------
# export_saved_model
# ---------------------------------------------------------------------------


def test_saved_model_signature_uint8_in_probabilities_out(model, images, tmp_path):
    x, _ = images
    path = ex.export_saved_model(model, tmp_path / "sm", labels=CLASSES)
    assert listing(path) == sorted(
        ["assets", "fingerprint.pb", "labels.txt", "saved_model.pb", "variables"]
    )
    with open(os.path.join(path, "labels.txt")) as f:
        assert f.read() == "a_red\nb_green\nc_blue\n"

    loaded = tf.saved_model.load(path)
    assert list(loaded.signatures) == ["serving_default"]
    sig = loaded.signatures["serving_default"]
    _, inputs = sig.structured_input_signature
    assert list(inputs) == ["image"]
    assert inputs["image"].dtype == tf.uint8
    assert inputs["image"].shape.as_list() == [None, SIZE, SIZE, 3]
    assert list(sig.structured_outputs) == ["probabilities"]
    assert sig.structured_outputs["probabilities"].shape.as_list() == [None, 3]

    probs = sig(image=tf.constant(x[:17]))["probabilities"].numpy()
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, keras_probs(model, x[:17]), atol=1e-5)
    # Only the main head's weights are in the deployed graph.
    names = [v.name for v in loaded.variables]
    assert any(n.startswith("main/") for n in names)
    assert not any(n.startswith(("aux1", "aux2")) for n in names)


def test_saved_model_aux_head_and_overwrite(model, images, tmp_path):
    x, _ = images
    dest = tmp_path / "sm"
    ex.export_saved_model(model, dest, labels=CLASSES)
    before = (dest / "saved_model.pb").read_bytes()
    with pytest.raises(ex.ExportError, match="overwrite"):
        ex.export_saved_model(model, dest, labels=CLASSES, head="aux1")
    assert (dest / "saved_model.pb").read_bytes() == before

    ex.export_saved_model(model, dest, labels=CLASSES, head="aux1", overwrite=True)
    sig = tf.saved_model.load(str(dest)).signatures["serving_default"]
    probs = sig(image=tf.constant(x[:9]))["probabilities"].numpy()
    np.testing.assert_allclose(probs, keras_probs(model, x[:9], head="aux1"), atol=1e-5)
    assert_other_head(probs, keras_probs(model, x[:9], head="main"))
    assert listing(tmp_path) == ["sm"]  # no temporary folders left behind


def test_saved_model_scales_for_model_without_preprocessing(tmp_path, images):
    x, _ = images
    net = GoogLeNet(stem="cifar", classes=3, width=0.125, input_shape=(SIZE, SIZE, 3),
                    include_preprocessing=False, classifier_activation="softmax")
    sig = tf.saved_model.load(ex.export_saved_model(net, tmp_path / "sm")).signatures[
        "serving_default"]
    probs = sig(image=tf.constant(x[:8]))["probabilities"].numpy()
    expected = net.predict(x[:8].astype("float32") / 127.5 - 1, verbose=0)[-1]
    np.testing.assert_allclose(probs, expected, atol=1e-5)  # softmax head: no second softmax


def test_saved_model_failure_leaves_nothing_half_written(model, tmp_path, monkeypatch):
    def explode(model, directory, head, batch_size=None):
        with open(os.path.join(directory, "saved_model.pb"), "w") as f:
            f.write("partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(ex, "_write_saved_model", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        ex.export_saved_model(model, tmp_path / "new")
    assert listing(tmp_path) == []

    old = tmp_path / "old"
    old.mkdir()
    (old / "keep.txt").write_text("previous export")
    with pytest.raises(RuntimeError, match="disk full"):
        ex.export_saved_model(model, old, overwrite=True)
    assert listing(tmp_path) == ["old"]
    assert listing(old) == ["keep.txt"]


def test_saved_model_rejects_wrong_labels_and_heads(model, tmp_path):
    with pytest.raises(ex.ExportError, match="2 labels .* 3 classes"):
        ex.export_saved_model(model, tmp_path / "a", labels=["x", "y"])
    with pytest.raises(ValueError, match="head"):
        ex.export_saved_model(model, tmp_path / "b", head="aux3")
    single = keras.Model(model.inputs, model.get_layer("main").output)
    with pytest.raises(ValueError, match="no 'aux1' output"):
        ex.export_saved_model(single, tmp_path / "c", head="aux1")
    assert listing(tmp_path) == []


# ---------------------------------------------------------------------------
# Full export of a run folder: every artifact against Keras
# ---------------------------------------------------------------------------


def test_full_export_writes_every_file(full_export):
    report, path, table = full_export
    assert listing(path) == sorted(
        [
            "assets", "export_report.json", "fingerprint.pb", "labels.txt",
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
    assert inp["quantization"] == (0.0, 0)  # raw 0-255 pixels, no input scaling needed
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


# ---------------------------------------------------------------------------
# Other sources and heads
# ---------------------------------------------------------------------------


def test_keras_file_with_calibration_folder_aux1_head(model_file, model, image_folder, images,
                                                      tmp_path, capsys):
    x, y = images
    rc = ex.main([
        model_file, "--name", "early", "--export-dir", str(tmp_path), "--head", "aux1",
        "--formats", "float32,int8", "--calibration-data", image_folder,
        "--eval-data", image_folder, "--repeats", "2",
    ])
    assert rc == 0, capsys.readouterr().err
    path = tmp_path / "early"
    assert listing(path) == [
        "export_report.json", "labels.txt", "model_float32.tflite", "model_int8.tflite"
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


def test_flex_ops_are_an_error(tmp_path):
    class MatrixInverse(keras.layers.Layer):
        def call(self, x):
            m = tf.reshape(x[:, :4, :4, 0], [-1, 4, 4]) + 100.0 * tf.eye(4)
            return tf.reshape(tf.linalg.inv(m), [-1, 16])

    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    net = keras.Model(inputs, keras.layers.Dense(3, name="main")(MatrixInverse()(inputs)))
    with pytest.raises(ex.ExportError, match="outside the TFLite builtins.*MatrixInverse"):
        ex.convert_model(net, "float32")

    # The checker itself: the same model converted with Flex allowed is refused.
    fn = tf.function(lambda image: {"probabilities": net(tf.cast(image, tf.float32))})
    concrete = fn.get_concrete_function(tf.TensorSpec([1, SIZE, SIZE, 3], tf.uint8))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], net)
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS
    ]
    flex = converter.convert()
    assert "CUSTOM:FlexMatrixInverse" in ex.tflite_ops(flex)
    with pytest.raises(ex.ExportError, match="FlexMatrixInverse"):
        ex.check_builtin_ops(flex)


# ---------------------------------------------------------------------------
# Bad input: one-line error, non-zero exit, nothing written
# ---------------------------------------------------------------------------


def _fails(argv, capsys, match):
    rc = ex.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
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

    assert ex.main(argv + ["--overwrite"]) == 0
    assert listing(dest) == ["export_report.json", "labels.txt", "model_float32.tflite"]
    assert (dest / "model_float32.tflite").read_bytes()[4:8] == b"TFL3"
    assert listing(tmp_path) == ["x"]


def test_bad_format_and_head(model_file, tmp_path, capsys):
    _fails([model_file, "--name", "x", "--export-dir", str(tmp_path), "--formats", "onnx"],
           capsys, "Unknown format")
    with pytest.raises(SystemExit) as e:
        ex.main([model_file, "--name", "x", "--head", "aux3"])
    assert e.value.code == 2


def test_command_line_exit_status(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "keras_googlenet.export", str(tmp_path / "missing.keras"),
         "--name", "x", "--export-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: Model not found")
    assert result.stdout == ""
