"""Tests for the `keras_googlenet.export` library (SavedModel + TFLite export).

Every artifact is run (SavedModel through `tf.saved_model.load`, TFLite through
the LiteRT interpreter) and its numbers are compared with the Keras model.
The command line over run folders (`python -m training.export`) is tested in
`test_export_cli.py`; the tiny model and images are in `export_helpers.py`.
"""

import json
import os
import stat
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
    tiny_config,
    workdir,
)

from keras_googlenet import GoogLeNet
from keras_googlenet import export as ex
from keras_googlenet.export import saved_model as saved_model_module

pytestmark = [pytest.mark.backends("tensorflow"), pytest.mark.slow]  # slow: every test converts TFLite files


@pytest.fixture(scope="module")
def tf():
    import tensorflow

    return tensorflow


# ---------------------------------------------------------------------------
# export_saved_model
# ---------------------------------------------------------------------------


def test_saved_model_signature_uint8_in_probabilities_out(model, images, tmp_path, tf):
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


def test_saved_model_aux_head_and_overwrite(model, images, tmp_path, tf):
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


def test_saved_model_scales_for_model_without_preprocessing(tmp_path, images, tf):
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

    monkeypatch.setattr(saved_model_module, "write_saved_model", explode)
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


def test_saved_model_writes_the_model_config(model, tmp_path):
    from keras_googlenet import GoogLeNetConfig

    path = ex.export_saved_model(model, tmp_path / "sm", labels=CLASSES, config=tiny_config())
    assert "model_config.json" in listing(path)
    assert GoogLeNetConfig.load(path) == tiny_config()
    with pytest.raises(ex.ExportError, match="classes=10"):
        ex.export_saved_model(model, tmp_path / "bad", config=tiny_config().replace(classes=10))
    with pytest.raises(ex.ExportError, match=r"input_shape \(32, 32, 3\)"):
        ex.export_saved_model(model, tmp_path / "bad",
                              config=tiny_config().replace(input_shape=(32, 32, 3)))
    assert listing(tmp_path) == ["sm"]


# ---------------------------------------------------------------------------
# export(): a model and arrays or image folders
# ---------------------------------------------------------------------------


def test_export_from_arrays_with_config(model, images, tmp_path):
    from keras_googlenet import GoogLeNetConfig

    x, y = images
    report = ex.export(model, tmp_path / "arrays", formats="float32,int8", labels=CLASSES,
                       config=tiny_config(), calibration_images=x[:40], eval_images=x[40:],
                       eval_labels=y[40:], repeats=2, log=lambda msg: None)
    path = tmp_path / "arrays"
    assert listing(path) == ["export_report.json", "export_report.png", "labels.txt",
                             "model.weights.h5", "model_config.json", "model_float32.tflite",
                             "model_int8.tflite"]
    assert GoogLeNetConfig.load(path) == tiny_config()
    assert json.loads((path / "export_report.json").read_text()) == json.loads(
        json.dumps(report))
    assert report["name"] == "arrays" and report["model"] is None
    assert report["calibration"] == {"source": "calibration_images", "images": 40, "seed": 0}
    assert report["sample"]["images"] == 50 and report["sample"]["labelled"] is True
    assert [a["format"] for a in report["artifacts"]] == ["float32", "int8"]
    assert report["artifacts"][0]["top1_agreement"] == 1.0
    assert report["environment"]["cpu_count"] == os.cpu_count()
    table = ex.format_report(report)
    assert "| model_int8.tflite |" in table and "Targets:" in table


def test_export_rejects_images_of_the_wrong_size(model, images, tmp_path):
    x, _ = images
    with pytest.raises(ex.ExportError, match=r"calibration_images must be uint8 \[N, 16, 16, 3\]"):
        ex.export(model, tmp_path / "x", formats="int8", calibration_images=x[:, :8, :8])
    with pytest.raises(ex.ExportError, match="eval_images"):
        ex.export(model, tmp_path / "x", formats="float32", eval_images=x.astype("float32"))
    with pytest.raises(ex.ExportError, match="head must be one of"):
        ex.export(model, tmp_path / "x", head="aux3")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("mask, folder_mode, file_mode",
                         [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_exported_files_respect_the_umask(model, image_folder, tmp_path, mask, folder_mode,
                                          file_mode):
    old = os.umask(mask)
    try:
        ex.export(model, tmp_path / "out", formats="saved_model,float32",
                  calibration_data=image_folder, eval_data=image_folder, labels=CLASSES,
                  config=tiny_config(), repeats=1, log=lambda msg: None)
    finally:
        os.umask(old)
    root = tmp_path / "out"
    assert stat.S_IMODE(root.stat().st_mode) == folder_mode
    seen = 0
    for parent, dirs, files in os.walk(root):
        for d in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(parent, d)).st_mode) == folder_mode, d
        for f in files:
            assert stat.S_IMODE(os.stat(os.path.join(parent, f)).st_mode) == file_mode, f
            seen += 1
    assert seen >= 6  # saved_model.pb, variables, tflite, labels, config, report


# ---------------------------------------------------------------------------
# TFLite: builtin ops only
# ---------------------------------------------------------------------------


def test_flex_ops_are_an_error(tmp_path, tf):
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


def test_old_command_says_where_the_cli_moved(repo):
    result = subprocess.run(
        [sys.executable, "-m", "keras_googlenet.export", "runs/x", "--name", "x"],
        cwd=repo, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(repo), "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "python -m training.export" in lines[-1]
    assert result.stdout == ""


# ---------------------------------------------------------------------------
# TFLite metadata: bad input, and turning it off
# ---------------------------------------------------------------------------


def test_bad_labels_and_metadata_are_clear_errors(model, tmp_path, monkeypatch):
    cases = [
        ({"labels": ["a_red", "caf\udce9", "c"]}, "not valid UTF-8"),
        ({"labels": ["a", "", "c"]}, "non-empty single lines"),
        ({"labels": ["a", "b"]}, "2 labels for a model with 3 classes"),
        ({"metadata": "yes"}, "metadata must be True, False or a dict"),
        ({"metadata": {"colour": "red"}}, r"Unknown metadata field\(s\) \['colour'\]"),
        ({"metadata": {"author": " "}}, r"metadata\['author'\] must be a non-empty string"),
        ({"metadata": {"license": "\udcff"}}, r"metadata\['license'\] is not valid UTF-8"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ex.ExportError, match=match):
            ex.export(model, tmp_path / "x", formats="float32", log=lambda msg: None, **kwargs)
    # Asked for, but the package that writes it is missing: said before anything is written.
    monkeypatch.setitem(sys.modules, "flatbuffers", None)
    with pytest.raises(ex.ExportError, match="`flatbuffers` package is not installed.*"
                       "--no-metadata"):
        ex.export(model, tmp_path / "x", formats="float32", log=lambda msg: None)
    assert listing(tmp_path) == []


def test_read_labels_refuses_empty_lines_and_other_encodings(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("cat\ndog\n")
    assert ex.read_labels(path) == ["cat", "dog"]
    path.write_text("cat\n\ndog\n")
    with pytest.raises(ex.ExportError, match="has an empty line 2"):
        ex.read_labels(path)
    path.write_bytes("cat\ncaf\u00e9\n".encode("latin-1"))
    with pytest.raises(ex.ExportError, match=r"is not UTF-8 text \(byte 7: b'\\xe9'\)"):
        ex.read_labels(path)


def test_export_without_metadata_says_so_and_writes_plain_files(model, images, tmp_path):
    from ai_edge_litert import schema_py_generated as tfl

    x, _ = images
    logged = []
    report = ex.export(model, tmp_path / "plain", formats="float32", labels=CLASSES,
                       metadata=False, eval_images=x[:8], repeats=1, log=logged.append)
    assert logged.count(ex.NO_METADATA_NOTE) == 1 and "not embedded" in ex.NO_METADATA_NOTE
    data = (tmp_path / "plain" / "model_float32.tflite").read_bytes()
    model_fb = tfl.Model.GetRootAsModel(bytearray(data), 0)
    names = [model_fb.Metadata(i).Name() for i in range(model_fb.MetadataLength())]
    assert b"TFLITE_METADATA" not in names and ex.embedded_files(data) == {}
    assert report["metadata"]["embedded"] is False
    assert report["artifacts"][0]["metadata_bytes"] == 0
