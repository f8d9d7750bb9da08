"""Attacks on the command lines that end before any training: each one must be a one-line
error that names the bad value, with nothing written.

Every case here is cheap (parse errors and validation before data or model), so none is
marked slow; the attacks that train are in test_run_attacks.py.
"""

import os

import pytest
from training_helpers import HOSTILE_TENSORS, save_state_dict

import training.cifar
import training.export
import tuner.search
from training.cli import UsageError

#: A run that would start at once if the attacked flag were accepted (tiny and synthetic).
QUICK = ["--data", "synthetic", "--synthetic-examples", "32", "--width", "0.125",
         "--image-size", "16", "--batch-size", "16", "--epochs", "1", "--no-export",
         "--verbose", "0", "--run-eagerly"]


def _run(tmp_path, capsys, *flags):
    """`training.cifar.main` on QUICK + flags; returns (exit status, stderr lines)."""
    quick = ["--runs-dir", str(tmp_path / "runs"), *QUICK]
    for flag in flags:  # a flag of QUICK that the attack sets is dropped (not given twice)
        if flag in quick[:-1] and not quick[quick.index(flag) + 1].startswith("--"):
            del quick[quick.index(flag):quick.index(flag) + 2]
    if "--export" in flags:
        quick.remove("--no-export")
    status = training.cifar.main([*quick, *flags])
    err = capsys.readouterr().err.strip().splitlines()
    return status, err


def _assert_one_line(status, err, *words):
    assert status != 0
    assert len(err) == 1 and err[0].startswith("error: "), err
    for word in words:
        assert word in err[0], err


# ---- out-of-range numbers: refused before anything is allocated ---------------------


@pytest.mark.parametrize("flag, value", [
    ("--width", "inf"),
    ("--width", "nan"),
    ("--width", "-inf"),
    ("--width", "1e6"),  # a network of ~10^16 parameters
    ("--seed", "4294967296"),  # numpy's seeds stop at 2**32 - 1
    ("--seed", "-1"),
    ("--image-size", "30000"),
    ("--synthetic-examples", str(10**12)),
    ("--batch-size", str(10**12)),
    ("--epochs", str(10**12)),
    ("--steps-per-execution", str(10**12)),
    ("--lr", "inf"),
    ("--lr", "nan"),
    ("--weight-decay", "inf"),
    ("--aux-weight", "inf"),
    ("--warmup-epochs", "nan"),
    ("--pad", str(10**9)),
])
def test_out_of_range_numbers_are_one_line_errors(tmp_path, capsys, flag, value):
    status, err = _run(tmp_path, capsys, flag, value)
    _assert_one_line(status, err, flag)
    assert not (tmp_path / "runs").exists()


def test_synthetic_data_is_bounded_by_its_memory_not_only_its_count(tmp_path, capsys):
    # Each number is fine alone; together they are 3 TB of images.
    status, err = _run(tmp_path, capsys, "--synthetic-examples", "1000000",
                       "--image-size", "1024")
    _assert_one_line(status, err, "--synthetic-examples", "GiB")


# ---- names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "a" * 300,  # longer than a file name may be
    "a" * 250,  # fits, but not with the temporary names derived from it
    "run\n",  # the pattern's $ matches before a trailing newline
    "run\nother",
    "../escape",
    "a/b",
    ".hidden",
    "",
])
def test_bad_run_names_are_one_line_errors(tmp_path, capsys, name):
    status, err = _run(tmp_path, capsys, "--name", name)
    _assert_one_line(status, err, "--name")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "escape").exists()


# ---- folders that cannot be written -----------------------------------------------------


def _deny_writes(monkeypatch, folder):
    """Makes `folder` read-only, also for root (for whom permissions do not apply, as
    on a read-only mount): `os.access` answers as the kernel would there."""
    folder.chmod(0o555)
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if os.path.abspath(path) == str(folder) and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


@pytest.mark.parametrize("flag", ["--runs-dir", "--export-dir", "--cache-dir"])
@pytest.mark.parametrize("kind", ["file", "under_a_file", "read_only", "read_only_parent"])
def test_unwritable_folders_are_one_line_errors(tmp_path, capsys, monkeypatch, flag, kind):
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("not a folder")
    elif kind == "under_a_file":
        (tmp_path / "file").write_text("not a folder")
        target = tmp_path / "file" / "sub"
    elif kind == "read_only":
        target.mkdir()
        _deny_writes(monkeypatch, target)
    else:
        target.mkdir()
        _deny_writes(monkeypatch, target)
        target = target / "sub"
    flags = [flag, str(target)]
    if flag == "--export-dir":
        flags.append("--export")
    try:
        status, err = _run(tmp_path, capsys, *flags)
    finally:
        if (tmp_path / "target").is_dir():
            (tmp_path / "target").chmod(0o755)
    _assert_one_line(status, err, flag, str(target))
    if flag != "--runs-dir":
        assert not (tmp_path / "runs").exists()
    if kind in ("under_a_file", "read_only_parent"):
        assert not target.exists()


# ---- the shared parser: no abbreviations, no flag given twice --------------------------


def _cifar(argv):
    return training.cifar.build_parser().parse_args(argv)


def _export(argv):
    return training.export.build_parser().parse_args(["run-folder", "--name", "x", *argv])


def _tuner(argv):
    return tuner.search.parse_args(argv)


CLIS = {"training.cifar": _cifar, "training.export": _export, "tuner.search": _tuner}


@pytest.mark.parametrize("cli", CLIS)
@pytest.mark.parametrize("argv, message", [
    (["--over"], "unrecognized arguments: --over"),
    (["--overwrite", "--overwrite"], "--overwrite was given twice"),
    (["--seed", "1", "--seed", "2"], "--seed was given twice"),
    (["--seed=1", "--seed", "2"], "--seed was given twice"),
])
def test_abbreviations_and_repeated_flags_are_refused(cli, argv, message):
    with pytest.raises(UsageError, match=message):
        CLIS[cli](argv)


@pytest.mark.parametrize("argv, message", [
    (["--export", "--no-export"], "--export/--no-export was given twice"),
    (["--name", "a", "--name", "b"], "--name was given twice"),
    (["--ep", "3"], "unrecognized arguments: --ep"),
])
def test_training_cli_refuses_repeats_of_paired_flags(capsys, argv, message):
    assert training.cifar.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_repeats_of_a_value_that_looks_like_a_flag_are_values():
    # The value of a flag given with `=` is not a flag.
    args = _cifar(["--name=a", "--tfds-name=--name"])
    assert (args.name, args.tfds_name) == ("a", "--name")


# ---- --weights files that are not dense float tensors ---------------------------------


@pytest.mark.parametrize("hostile", sorted(HOSTILE_TENSORS))
def test_weights_of_hostile_tensors_are_one_line_errors(tmp_path, capsys, hostile):
    path = save_state_dict(tmp_path / f"{hostile}.pth", hostile)
    status, err = _run(tmp_path, capsys, "--weights", str(path), "--stem", "imagenet",
                       "--width", "1", "--image-size", "64")
    _assert_one_line(status, err, "--weights", HOSTILE_TENSORS[hostile][0])
