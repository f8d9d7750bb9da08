"""`training.evaluate`: the end-of-run evaluation files and `python -m training.evaluate`."""

import json
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from training_helpers import CLASSES, TINY, make_image_folder

from training.cifar import main as train_main
from training.evaluate import CONFUSION_FILE, EVALUATION_FILE, array_batches, evaluate, main

pytestmark = pytest.mark.slow  # reads a trained run


def _mirror_sensitive_model():
    """A two-class model on 4x4 one-channel images: the logit of class 0 is
    1 x (left column) - 10 x (right column), class 1's is 0. An image bright
    in its left column is class 0 (p = sigmoid(4)), its mirror clearly not
    (sigmoid(-40)): the mean of the two makes it class 1."""
    kernel = np.zeros((4, 4, 1, 2), "float32")
    kernel[:, 0, 0, 0], kernel[:, 3, 0, 0] = 1.0, -10.0
    images = keras.Input((4, 4, 1))
    flat = keras.layers.Flatten()(images)
    dense = keras.layers.Dense(2, name="main")
    model = keras.Model(images, dense(flat))
    dense.set_weights([kernel.reshape(16, 2), np.zeros(2, "float32")])
    return model


def test_tta_flip_scores_the_mean_of_each_image_and_its_mirror(tmp_path):
    model = _mirror_sensitive_model()
    x = np.zeros((3, 4, 4, 1), "float32")
    x[:, :, 0] = 1.0  # bright left column: class 0 without TTA, class 1 with it
    y = np.zeros(3, "int64")
    plain = evaluate(model, array_batches(x, y, 2), ["left", "right"], tmp_path / "plain")
    tta = evaluate(model, array_batches(x, y, 2), ["left", "right"], tmp_path / "tta",
                   tta_flip=True)
    assert (plain["top1_accuracy"], plain["tta_flip"]) == (1.0, False)
    assert (tta["top1_accuracy"], tta["tta_flip"]) == (0.0, True)
    assert tta["confusion_matrix"] == [[0, 3], [0, 0]]
    assert json.loads((tmp_path / "tta" / EVALUATION_FILE).read_text()) == tta
    assert (tmp_path / "tta" / CONFUSION_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_zero_weight_padding_is_left_out(tmp_path):
    model = _mirror_sensitive_model()
    x = np.zeros((4, 4, 4, 1), "float32")
    x[:2, :, 0] = 1.0  # class 0, right
    onehot = np.eye(2, dtype="float32")[[0, 0, 1, 1]]  # the last two: wrong, but padding
    batches = [(x[:2], onehot[:2], np.ones(2)), (x[2:], onehot[2:], np.zeros(2))]
    report = evaluate(model, batches, ["left", "right"], tmp_path)
    assert (report["num_images"], report["top1_accuracy"]) == (2, 1.0)


@pytest.mark.parametrize("pipeline", ["numpy", "tf.data"])
def test_the_training_pipelines_batches_with_labels_per_head_are_read(tmp_path, pipeline):
    from training.data import ArrayDataset
    from training.recipe import fan_out_labels

    model = _mirror_sensitive_model()
    x = np.zeros((5, 4, 4, 1), "float32")
    x[:3, :, 0] = 1.0  # predicted class 0; the blank last two tie at logit 0: argmax 0 too
    y = np.array([0, 0, 0, 1, 0], "int32")
    if pipeline == "numpy":
        val = ArrayDataset(x, y, 2, batch_size=2)
    else:
        import tensorflow as tf

        val = tf.data.Dataset.from_tensor_slices((x, tf.one_hot(y, 2))).batch(2)
    report = evaluate(model, fan_out_labels(val, model.output_names), ["left", "right"], tmp_path)
    assert report["confusion_matrix"] == [[4, 0], [1, 0]]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One finished tiny run with --tta-flip (1 epoch, 9 held-out images)."""
    root = tmp_path_factory.mktemp("evaluate")
    data = make_image_folder(root / "data", per_class=10)
    args = ["--name", "tiny", "--data-dir", str(data), "--runs-dir", str(root / "runs"),
            "--cache-dir", str(root / "cache"), "--no-export", "--epochs", "1",
            "--val-fraction", "0.3", "--tta-flip", *TINY]
    assert train_main(args) == 0
    run_dir = root / "runs" / "tiny"
    return SimpleNamespace(root=root, data=data, dir=run_dir,
                           results=json.loads((run_dir / "results.json").read_text()),
                           report=json.loads((run_dir / EVALUATION_FILE).read_text()))


def test_every_run_ends_with_an_evaluation_matching_results_json(run):
    report, results = run.report, run.results
    assert (run.dir / CONFUSION_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["class_names"] == list(CLASSES) and report["tta_flip"] is True
    assert report["num_images"] == results["num_val"] == 9
    assert sum(map(sum, report["confusion_matrix"])) == 9
    assert "top5_accuracy" not in report  # 3 classes
    # --tta-flip: the evaluation scores what val_accuracy_tta measured.
    assert report["top1_accuracy"] == pytest.approx(results["val_accuracy_tta"]["main"], abs=1e-6)
    assert results["evaluation"]["top1_accuracy"] == report["top1_accuracy"]
    assert results["evaluation"]["file"] == EVALUATION_FILE
    correct = sum(c["correct"] for c in report["per_class"].values())
    assert correct / 9 == pytest.approx(report["top1_accuracy"])


def test_cli_reevaluates_the_held_out_split_with_and_without_tta(run, tmp_path, capsys):
    assert main([str(run.dir), "--output-dir", str(tmp_path / "tta")]) == 0
    again = json.loads((tmp_path / "tta" / EVALUATION_FILE).read_text())
    assert again["confusion_matrix"] == run.report["confusion_matrix"] and again["tta_flip"]
    assert main([str(run.dir), "--no-tta-flip", "--output-dir", str(tmp_path / "plain")]) == 0
    plain = json.loads((tmp_path / "plain" / EVALUATION_FILE).read_text())
    assert plain["tta_flip"] is False
    assert plain["top1_accuracy"] == pytest.approx(run.results["val_accuracy"]["main"], abs=1e-6)
    assert "top-1" in capsys.readouterr().out


def test_cli_evaluates_a_folder_of_images(run, capsys):
    folder = make_image_folder(run.root / "photos", split="images", per_class=2, seed=1) / "images"
    assert main([str(run.dir), "--data-dir", str(folder)]) == 0
    out = run.dir / "evaluation-images"
    report = json.loads((out / EVALUATION_FILE).read_text())
    assert report["num_images"] == 6 and report["source"] == f"image folder {folder}"
    assert (out / CONFUSION_FILE).exists()
    # The run's own evaluation is left as it was.
    assert json.loads((run.dir / EVALUATION_FILE).read_text()) == run.report


def test_cli_refuses_a_folder_whose_classes_differ_in_one_line(run, capsys):
    folder = make_image_folder(run.root / "odd", split="images", per_class=1,
                               classes=("cat", "dog", "zebra")) / "images"
    assert main([str(run.dir), "--data-dir", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: the folder's classes differ from the run's: missing ['frog'], "
                          "extra ['zebra']")


@pytest.mark.parametrize("what, expected", [
    ("missing", "error: not found:"),
    ("unfinished", "has no model.keras"),
    ("model file", "is a model file, not a run folder: pass --data-dir"),
])
def test_cli_bad_input_is_one_line(run, tmp_path, capsys, what, expected):
    target = {"missing": tmp_path / "nope", "unfinished": tmp_path,
              "model file": run.dir / "model.keras"}[what]
    assert main([str(target)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
