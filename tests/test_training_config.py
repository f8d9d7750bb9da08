"""TrainConfig and the command line of `python -m training.cifar` (no training)."""

import dataclasses
import json
import re

import pytest

from keras_googlenet._internal.environment import auto_precision, cpu
from training.cifar import config_from_args, main
from training.config import ConfigError, TrainConfig, default_model


def test_resolve_fills_machine_dependent_values_for_this_cpu():
    config = TrainConfig().resolve()
    assert config.data == "tfds"
    # No GPU here, TensorFlow backend: no XLA, the CPU's auto precision, tf.data.
    assert config.jit is False
    assert (config.precision, config.precision_reason) == (
        auto_precision("tensorflow", None, cpu()[1])[0],
        "auto: " + auto_precision("tensorflow", None, cpu()[1])[1])
    assert TrainConfig(precision="float32").resolve().precision_reason is None
    assert config.pipeline == "tf.data"
    assert config.warmup_epochs == 5.0  # 5% of 100 epochs
    assert TrainConfig(epochs=10).resolve().warmup_epochs == 0.5


def test_resolve_keeps_explicit_values_and_makes_data_dir_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(data_dir="data", jit=True, precision="mixed_bfloat16",
                         pipeline="numpy", warmup_epochs=2).resolve()
    assert config.data == "folder"
    assert config.data_dir == str(tmp_path / "data")
    assert (config.jit, config.precision, config.pipeline, config.warmup_epochs) == (
        True, "mixed_bfloat16", "numpy", 2)


def test_config_json_round_trip(tmp_path):
    config = TrainConfig(name="x", model=default_model(width=0.5), limit=10).resolve()
    config.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json") == config
    data = json.loads((tmp_path / "config.json").read_text())
    # The run records the precision --precision auto picked, and why.
    assert data["model"]["width"] == 0.5 and data["precision"] in ("float32", "mixed_bfloat16")
    assert data["precision_reason"].startswith("auto: ")
    with pytest.raises(ConfigError, match="unknown configuration keys: bogus"):
        TrainConfig.from_dict({**data, "bogus": 1})


def test_resume_differences_ignore_only_state_free_fields():
    a = TrainConfig(name="x").resolve()
    assert a.resume_differences(dataclasses.replace(a, verbose=2, overwrite=True, jit=True)) == []
    assert a.resume_differences(dataclasses.replace(a, lr=0.2, epochs=3)) == ["epochs", "lr"]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"model": default_model(width=0)}, "--width"),
        ({"val_fraction": 1.0}, "--val-fraction"),
        ({"image_size": 8}, "--image-size must be an integer >= 16"),
        ({"model": default_model(stem="imagenet"), "image_size": 32}, ">= 64 for --stem imagenet"),
        ({"name": "../escape"}, "--name"),
        ({"data": "folder"}, "needs --data-dir"),
        ({"data": "synthetic", "data_dir": "x"}, "only used with --data folder"),
        ({"batch_size": 0}, "--batch-size"),
        ({"epochs": 0}, "--epochs"),
        ({"warmup_epochs": 200}, "--warmup-epochs"),
        ({"lr": 0}, "--lr"),
        ({"precision": "fp8"}, "--precision"),
        ({"strategy": "horovod"}, "--strategy"),
        ({"label_smoothing": 1.5}, "--label-smoothing"),
    ],
)
def test_validate_rejects_bad_values_naming_the_flag(fields, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        TrainConfig(**fields).resolve()


def test_command_line_maps_to_config_fields():
    config = config_from_args([
        "--name", "r", "--epochs", "3", "--batch-size", "32", "--lr", "0.05", "--width", "0.25",
        "--stem", "imagenet", "--image-size", "96", "--data", "synthetic", "--limit", "7",
        "--val-fraction", "0.2", "--seed", "5", "--runs-dir", "R", "--export-dir", "S",
        "--no-jit", "--precision", "mixed_float16", "--strategy", "mirrored", "--ema",
        "--no-augment", "--label-smoothing", "0", "--weight-decay", "0.001", "--overwrite",
    ])
    assert (config.model.width, config.model.stem) == (0.25, "imagenet")
    expected = dict(name="r", epochs=3, batch_size=32, lr=0.05,
                    image_size=96, data="synthetic", limit=7, val_fraction=0.2, seed=5,
                    runs_dir="R", export_dir="S", jit=False, precision="mixed_float16",
                    strategy="mirrored", ema=True, augment=False, label_smoothing=0.0,
                    weight_decay=0.001, overwrite=True)
    assert {k: getattr(config, k) for k in expected} == expected
    auto = config_from_args([])
    assert (auto.jit, auto.precision, auto.pipeline, auto.data) == (None, None, None, None)


def test_help_explains_every_required_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--name", "--epochs", "--batch-size", "--lr", "--width", "--stem",
                 "--image-size", "--data", "--data-dir", "--limit", "--val-fraction", "--seed",
                 "--runs-dir", "--export-dir", "--jit", "--precision", "--strategy", "--ema",
                 "--overwrite"):
        assert flag in out


@pytest.mark.parametrize(
    "argv, status, message",
    [
        (["--bogus-flag"], 2, "unrecognized arguments: --bogus-flag"),
        (["--epochs", "many"], 2, "invalid int value"),
        (["--stem", "resnet"], 2, "invalid choice"),
        (["--width", "-1"], 1, "--width must be > 0"),
        (["--data", "folder"], 1, "needs --data-dir"),
    ],
)
def test_bad_command_lines_give_one_line_errors(argv, status, message, capsys, tmp_path):
    assert main(argv + ["--runs-dir", str(tmp_path / "runs")]) == status
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "runs").exists()


def test_blocks_table_is_validated_saved_and_built(tmp_path):
    from keras_googlenet import PAPER_BLOCKS
    from training.recipe import build_model

    blocks = [(8, 8, 8, 4, 4, 4)] * 9
    config = TrainConfig(model=default_model(blocks=blocks, width=1.0)).resolve()
    assert config.to_dict()["model"]["blocks"] == [[8, 8, 8, 4, 4, 4]] * 9  # JSON lists
    config.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json").model.blocks == config.model.blocks
    model = build_model(config, num_classes=10)
    assert model.get_layer("inception_5b").output.shape[-1] == 24
    paper = build_model(TrainConfig().resolve(), num_classes=10)
    assert paper.get_layer("inception_5b").output.shape[-1] == sum(PAPER_BLOCKS[-1][i] for i in (0, 2, 4, 5))
    with pytest.raises(ConfigError, match="blocks"):
        TrainConfig(model=default_model(blocks=[(8, 8, 8, 4, 4)] * 9)).resolve()
    with pytest.raises(ConfigError, match="blocks"):
        TrainConfig(model=default_model(blocks=[(8, 8, 8, 4, 4, 0)] * 9)).resolve()


@pytest.mark.parametrize(
    "backend, gpu, flags, expected",
    [
        ("tensorflow", None, {"avx512f", "amx_bf16", "amx_tile", "avx512_bf16"},
         "mixed_bfloat16"),  # Sapphire Rapids: AMX-BF16
        # Zen 4/5: AVX512-BF16 without AMX (1.43x float32 on a Zen 5 EPYC,
        # benchmarks/results/cpu_bf16_side_by_side.json)
        ("tensorflow", None, {"avx512f", "avx512_bf16"}, "mixed_bfloat16"),
        ("tensorflow", None, {"avx512f", "avx512_vnni"}, "float32"),  # no bf16 units
        ("tensorflow", None, set(), "float32"),  # flags unknown (non-x86)
        ("jax", None, {"amx_bf16"}, "float32"),  # bf16 measured only on TensorFlow
        ("torch", None, {"amx_bf16"}, "float32"),
        ("tensorflow", 9.0, set(), "mixed_bfloat16"),  # GPUs as on main
        ("jax", 8.0, set(), "mixed_bfloat16"),
        ("tensorflow", 7.5, {"amx_bf16"}, "mixed_float16"),
    ],
)
def test_auto_precision_follows_cpu_flags_and_gpu(backend, gpu, flags, expected):
    policy, reason = auto_precision(backend, gpu, flags)
    assert policy == expected
    assert reason  # printed in the run's first line


def test_auto_precision_reason_names_the_deciding_flag():
    assert auto_precision("tensorflow", None, {"amx_bf16"}) == (
        "mixed_bfloat16", "CPU has amx_bf16")
    assert "no bf16 units" in auto_precision("tensorflow", None, {"avx2"})[1]


#: The multi-worker settings of two processes on one machine.
TWO = dict(strategy="multi-worker", num_processes=2, process_id=1, job_addresses="127.0.0.1:9")


@pytest.mark.parametrize("fields, message", [
    (dict(TWO, process_id=2), "--process-id must be in [0, --num-processes) = [0, 2); got 2"),
    (dict(TWO, job_addresses="127.0.0.1"), "--job-addresses must be HOST:PORT of process 0"),
    (dict(strategy="none", num_processes=2), "--num-processes needs --strategy multi-worker"),
])
def test_multi_worker_settings_are_checked_before_anything_starts(fields, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig(**fields).resolve_processes()


def test_multi_worker_settings_come_from_keras_variables(monkeypatch):
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "10.0.0.1:1234")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "4")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "3")
    config = TrainConfig(strategy="multi-worker").resolve_processes()
    assert (config.job_addresses, config.num_processes, config.process_id) == (
        "10.0.0.1:1234", 4, 3)
    # Flags win over the variables.
    assert TrainConfig(strategy="multi-worker", process_id=0).resolve_processes().process_id == 0


def test_resume_rules_and_legacy_values_come_from_the_declarations():
    from training.config import LEGACY_VALUES, RESUME_INDEPENDENT

    assert set(RESUME_INDEPENDENT) == {
        "overwrite", "verbose", "framework_logs", "export", "jit", "pipeline", "cache_dir",
        "max_extract_mb", "max_extract_ratio", "steps_per_execution", "run_eagerly",
        "precision_reason", "job_addresses", "process_id", "init_timeout"}
    assert LEGACY_VALUES == {"cutout": 0, "tta_flip": False, "lr_scaling": "none",
                             "freeze_epochs": 0, "finetune_lr_factor": None}
    old_run = {k: v for k, v in TrainConfig().to_dict().items() if k not in LEGACY_VALUES}
    assert TrainConfig.from_dict(old_run) == TrainConfig()


def test_a_flat_legacy_config_json_loads_and_resumes_as_the_nested_form(tmp_path):
    """The shipped model's config.json, written when the network's settings were top-level
    keys, still loads and validates; saved again they are under "model", and the two
    forms load as the same configuration (so that such a run resumes)."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks/results/cifar10_w05/config.json"
    flat = json.loads(path.read_text())
    assert "model" not in flat and flat["width"] == 0.5  # the old layout
    config = TrainConfig.load(path)
    config.validate()
    assert (config.model.width, config.model.stem, config.epochs) == (
        flat["width"], flat["stem"], flat["epochs"])
    config.save(tmp_path / "config.json")
    saved = json.loads((tmp_path / "config.json").read_text())
    settings = ("stem", "width", "batch_norm", "dropout", "aux_dropout", "blocks")
    assert saved["model"] == {k: flat[k] for k in settings}
    assert not set(settings) & set(saved) and set(saved) - {"model"} <= set(flat)
    again = TrainConfig.load(tmp_path / "config.json")
    assert again == config and again.resume_differences(config) == []
    assert config.resume_differences(TrainConfig.from_dict({**flat, "width": 0.25})) == ["width"]
    with pytest.raises(ConfigError, match="unknown model keys: classes"):
        TrainConfig.from_dict({**saved, "model": {**saved["model"], "classes": 10}})
