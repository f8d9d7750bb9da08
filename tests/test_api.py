"""The Python API (`training.train`, `Run`): the command line's run, from Python."""

import json

import numpy as np
import pytest
from training_helpers import CLASSES, make_image_folder

import training
from training import TrainConfig, default_model

pytestmark = [pytest.mark.backends("tensorflow"), pytest.mark.slow]  # trains and exports


def test_train_evaluate_and_export_in_three_calls(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=10)
    config = TrainConfig(name="api", data_dir=str(data), runs_dir=str(tmp_path / "runs"),
                         export=False, epochs=2, model=default_model(width=0.125, stem="cifar"),
                         image_size=16,
                         batch_size=16, precision="float32", verbose=0)
    run = training.train(config)
    assert isinstance(run, training.Run)
    on_disk = json.loads((tmp_path / "runs" / "api" / "results.json").read_text())
    assert run.results == on_disk
    assert run.config.epochs == 2 and run.config.name == "api"
    history = run.history
    assert history["epoch"] == [0.0, 1.0] and len(history["loss"]) == 2
    assert all(np.isfinite(history["loss"]))
    images = np.zeros((2, 16, 16, 3), np.uint8)
    outputs = run.model.predict(images, verbose=0)
    main = outputs["main"] if isinstance(outputs, dict) else outputs[run.model.output_names.index("main")]
    assert main.shape == (2, len(CLASSES))

    report = run.evaluate()
    assert report["top1_accuracy"] == pytest.approx(run.results["evaluation"]["top1_accuracy"])
    assert report["class_names"] == list(CLASSES)
    assert sum(map(sum, report["confusion_matrix"])) == report["num_images"] > 0

    exported = run.export("api", export_dir=str(tmp_path / "saved"), formats=["float16"])
    assert (tmp_path / "saved" / "api" / "model_float16.tflite").stat().st_size > 0
    formats = [a.get("format") for a in exported["artifacts"]]
    assert "float16" in formats and "int8" not in formats
    # The run is the CLI's: load_run finds the same run from its folder.
    again = training.load_run(tmp_path / "runs" / "api")
    assert again.results == run.results and again.config == run.config


def test_load_run_refuses_a_folder_without_a_finished_run(tmp_path):
    with pytest.raises(ValueError, match="no results.json"):
        training.load_run(tmp_path)
