"""Fine-tuning pretrained weights: `python -m training.cifar --weights imagenet|PATH.pth`."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import torch
from training_helpers import REPO

import keras_googlenet as kg
from training.cifar import config_from_args, main

pytestmark = pytest.mark.backends("tensorflow")


@pytest.fixture(scope="module")
def pth(tmp_path_factory):
    """A torchvision GoogLeNet state dict (random weights), made in its own process."""
    out = tmp_path_factory.mktemp("pth")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    result = subprocess.run([sys.executable, "-m", "tests.torchvision_reference", str(out)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "googlenet.pth"


def test_weights_default_to_the_imagenet_stem_and_224(pth):
    config = config_from_args(["--weights", str(pth), "--data-dir", "x"]).resolve()
    assert (config.stem, config.image_size) == ("imagenet", 224)
    assert config_from_args(["--weights", str(pth), "--image-size", "96"]).image_size == 96
    model_config = config.model_config(10)
    assert {k: getattr(model_config, k) for k in kg.TORCHVISION_OPTIONS} == kg.TORCHVISION_OPTIONS
    assert config_from_args([]).model_config(10).large_branch_kernel == 5  # paper without


def test_fine_tuning_starts_from_the_backbone_with_new_heads(pth, image_folder, tmp_path, capsys):
    args = ["--name", "ft", "--data-dir", str(image_folder), "--weights", str(pth),
            "--image-size", "64", "--epochs", "1", "--batch-size", "8", "--lr", "1e-9",
            "--weight-decay", "0", "--no-export", "--runs-dir", str(tmp_path / "runs"),
            "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    assert "Loaded the pretrained backbone" in capsys.readouterr().out
    run = tmp_path / "runs" / "ft"
    saved = kg.GoogLeNetConfig.load(run / "model_config.json")
    assert saved.classes == 3 and saved.large_branch_kernel == 3 and saved.ceil_mode is True
    model = keras.saving.load_model(run / "model.keras")
    state = torch.load(pth, weights_only=True)
    # A learning rate of 1e-9 leaves the kernels where the .pth put them.
    np.testing.assert_allclose(model.get_layer("inception_4e_5x5").get_weights()[0],
                               state["inception4e.branch3.1.conv.weight"].numpy()
                               .transpose(2, 3, 1, 0), atol=1e-6)
    assert model.get_layer("main").get_weights()[0].shape == (1024, 3)  # a new head
    assert json.loads((run / "results.json").read_text())["epochs"] == 1


@pytest.mark.parametrize("extra, message", [
    (["--stem", "cifar"], "--stem must be imagenet with --weights; got 'cifar'"),
    (["--width", "0.5"], "--width must be 1 with --weights; got 0.5"),
])
def test_settings_the_weights_cannot_fit(pth, image_folder, tmp_path, capsys, extra, message):
    args = ["--data-dir", str(image_folder), "--weights", str(pth), "--runs-dir",
            str(tmp_path / "runs"), *extra]
    assert main(args) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_unknown_weights(image_folder, tmp_path, capsys):
    assert main(["--data-dir", str(image_folder), "--weights", "nowhere.pth"]) != 0
    assert "--weights must be one of ['imagenet'] or an existing torchvision GoogLeNet .pth" \
        in capsys.readouterr().err
