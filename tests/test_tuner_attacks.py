"""Attacks on the tuner's search folder: resuming under another
`KERASTUNER_TUNER_ID`, damaged keras-tuner state, `--train-best` names derived
from `--directory`, and `--width-step` values that overflow the grid. Each must
end in a one-line error (nothing overwritten) or really work."""

import json
import shutil

import pytest
from training_helpers import last_wins
import tensorflow as tf

from tuner import search as cli
from tuner.folder import check_tuner_state, SearchError
from tuner.space import SearchSpace, SpaceError

pytestmark = [
    pytest.mark.backends("tensorflow"),
    pytest.mark.filterwarnings("ignore:Even though the `tf.config.experimental_run_functions"),
]

#: A tiny search (as tests/test_tuner.py's): 32 synthetic images, one epoch, one trial.
TINY = [
    "--data", "synthetic", "--synthetic-examples", "32", "--batch-size", "32",
    "--image-size", "32", "--stem", "cifar", "--min-width", "0.0625", "--max-width", "0.125",
    "--epochs", "1", "--tuner", "random", "--max-mflops", "12", "--verbose", "0",
    "--max-trials", "1",
]


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished one-trial search in a folder whose name holds a space, with
    --train-best (whose run name is derived from that folder's name)."""
    root = tmp_path_factory.mktemp("tuner_attacks")
    directory = root / "my search"
    tf.config.run_functions_eagerly(True)
    try:
        rc = _cli_main(TINY + ["--directory", str(directory), "--train-best", "--train-epochs",
                              "1", "--runs-dir", str(root / "runs"), "--no-export"])
    finally:
        tf.config.run_functions_eagerly(False)
    assert rc == 0
    return directory


@pytest.mark.slow
def test_train_best_derives_a_valid_name_from_a_directory_with_a_space(searched):
    runs = sorted(p.name for p in (searched.parent / "runs").iterdir())
    assert len(runs) == 1 and runs[0].startswith("my-search-best-"), runs
    assert json.loads((searched / "search.json").read_text())["tuner_id"] == "tuner0"


def _copy(searched, tmp_path):
    directory = tmp_path / "s"
    shutil.copytree(searched, directory)
    return directory


def _snapshot(directory):
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("tuner_id", ["tuner1", "chief-2", "worker"])
def test_resume_under_another_tuner_id_is_refused_and_keeps_everything(
        searched, tmp_path, capsys, monkeypatch, tuner_id):
    directory = _copy(searched, tmp_path)
    before = _snapshot(directory)
    monkeypatch.setenv("KERASTUNER_TUNER_ID", tuner_id)
    assert _cli_main(TINY + ["--directory", str(directory), "--max-trials", "2"]) == 1
    _one_line_error(capsys, "KERASTUNER_TUNER_ID=tuner0", "--overwrite")
    assert _snapshot(directory) == before


@pytest.mark.slow
def test_resume_under_the_creators_id_really_resumes(searched, tmp_path, capsys, monkeypatch):
    directory = _copy(searched, tmp_path)
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    trial = (directory / "tuner" / "trial_0" / "trial.json").read_bytes()
    tf.config.run_functions_eagerly(True)
    try:
        assert _cli_main(TINY + ["--directory", str(directory)]) == 0
    finally:
        tf.config.run_functions_eagerly(False)
    assert "(resumed, local)" in capsys.readouterr().out
    assert (directory / "tuner" / "trial_0" / "trial.json").read_bytes() == trial


DAMAGE = {
    "search.json truncated": ("search.json", lambda b: b[: len(b) // 2]),
    "search.json a list": ("search.json", lambda b: b"[1, 2]"),
    "oracle.json garbled": ("tuner/oracle.json", lambda b: b"\x00\xff" + b[5:]),
    "oracle.json empty": ("tuner/oracle.json", lambda b: b""),
    "oracle.json {}": ("tuner/oracle.json", lambda b: b"{}"),
    "trial.json truncated": ("tuner/trial_0/trial.json", lambda b: b[: len(b) // 3]),
    "trial.json {}": ("tuner/trial_0/trial.json", lambda b: b"{}"),
    "tuner0.json truncated": ("tuner/tuner0.json", lambda b: b[:-2]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_state_is_one_line_naming_the_file(searched, tmp_path, capsys, case):
    directory = _copy(searched, tmp_path)
    name, damage = DAMAGE[case]
    path = directory / name
    path.write_bytes(damage(path.read_bytes()))
    assert _cli_main(TINY + ["--directory", str(directory)]) == 1
    err = _one_line_error(capsys, "--overwrite")
    assert path.name in err or "tuner" in err


def _edit_json(path, key, value):
    doc = json.loads(path.read_text())
    doc[key] = value
    path.write_text(json.dumps(doc))


def _replace_trial_folder_by_a_file(directory):
    trial = directory / "tuner" / "trial_0"
    shutil.rmtree(trial)
    trial.write_text("not a folder")
    return trial, "is not a folder"


def _score_not_a_number(directory):
    path = directory / "tuner" / "trial_0" / "trial.json"
    _edit_json(path, "score", "abc")
    return path, "'score' is \"abc\", expected a finite number or null"


def _ongoing_trials_a_list(directory):
    path = directory / "tuner" / "oracle.json"
    _edit_json(path, "ongoing_trials", ["0"])
    return path, "'ongoing_trials' is [\"0\"], expected an object of tuner id to trial id"


def _ongoing_trial_unknown(directory):
    path = directory / "tuner" / "oracle.json"
    _edit_json(path, "ongoing_trials", {"tuner0": "7"})
    return path, "'ongoing_trials' names trial \"7\""


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_replace_trial_folder_by_a_file, _score_not_a_number,
                                    _ongoing_trials_a_list, _ongoing_trial_unknown])
def test_extending_a_search_with_bad_state_is_refused_before_training(
        searched, tmp_path, capsys, monkeypatch, damage):
    """More trials on a search whose keras-tuner state is wrong: one line naming the
    file and what was expected, before any data is read or trial trained."""
    from training import data as training_data

    directory = _copy(searched, tmp_path)
    path, needle = damage(directory)
    before = _snapshot(directory)

    def no_data(*args, **kwargs):
        raise AssertionError("the state must be checked before the data is read")

    monkeypatch.setattr(training_data, "build_datasets", no_data)
    assert _cli_main(TINY + ["--directory", str(directory), "--max-trials", "3"]) == 1
    _one_line_error(capsys, str(path), needle, "--overwrite")
    assert _snapshot(directory) == before


# ---- without a search ------------------------------------------------------------


#: The oracle.json of a search that has run no trial.
EMPTY_ORACLE = {
    "ongoing_trials": {}, "hyperparameters": {"space": [], "values": {}}, "start_order": [],
    "end_order": [], "run_times": {}, "retry_queue": [], "seed": 1, "seed_state": 1,
    "tried_so_far": [], "id_to_hash": {},
    "display": {"search_start": None, "trial_start": {}, "trial_number": {}},
}


def test_tuner_id_check_without_search_json(tmp_path):
    """A folder from before tuner_id was recorded: the creator is read from its files."""
    project = tmp_path / "tuner"
    project.mkdir()
    (project / "oracle.json").write_text(json.dumps(EMPTY_ORACLE))
    (project / "tuner0.json").write_text("{}")
    check_tuner_state(tmp_path, "tuner0")
    with pytest.raises(SearchError, match="KERASTUNER_TUNER_ID=tuner0"):
        check_tuner_state(tmp_path, "tuner7")
    (project / "tuner0.json").unlink()
    with pytest.raises(SearchError, match="--overwrite"):
        check_tuner_state(tmp_path, "tuner0")


@pytest.mark.parametrize("name, directory, expected", [
    (None, "runs/my search", "my-search-best-0123abcd"),
    (None, "runs/ünïcode dir!", "n-code-dir-best-0123abcd"),
    (None, "runs/@@@", "search-best-0123abcd"),
    (None, "runs/" + "x" * 300, "x" * (200 - len("-best-0123abcd")) + "-best-0123abcd"),
    ("mine", "runs/my search", "mine"),
])
def test_train_best_name_is_valid(name, directory, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    got = cli.train_best_name({"name": name, "directory": directory}, "0123abcd")
    assert got == expected
    cli.check_train_best(cli.TrainConfig(), {"name": name, "directory": directory,
                                             "train_epochs": 1})


def test_train_best_checks_before_the_search(tmp_path, capsys):
    """A bad --train-epochs (or name) fails before any search file is written."""
    directory = tmp_path / "s"
    assert _cli_main(TINY + ["--directory", str(directory), "--train-best",
                            "--train-epochs", "0"]) == 1
    _one_line_error(capsys, "--train-epochs")
    assert not directory.exists()


@pytest.mark.parametrize("step", ["1e-9", "1e-300", "5e-324", "0.000001"])
def test_tiny_width_step_is_one_line(tmp_path, capsys, step):
    directory = tmp_path / "s"
    assert _cli_main(TINY + ["--directory", str(directory), "--width-step", step]) in (1, 2)
    _one_line_error(capsys, "step")
    assert not directory.exists()
    with pytest.raises(SpaceError, match="steps"):
        SearchSpace(0.0625, 0.125, float(step))


def _cli_main(argv=None):
    return cli.main(None if argv is None else last_wins(list(argv)))
