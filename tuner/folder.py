"""The search folder of `python -m tuner.search`: its fingerprint and result files.

- `search.json`: `fingerprint(...)`, the settings that define a search; a folder
  made with other settings is refused (`check_directory`);
- `summary.md`, `trials.json`: every trial (`trial_rows`, `summary_table`);
- `trials.png`: every trial's score against its MFLOPs (`tuner.chart`);
- `model_config.json`: the best configuration (a `keras_googlenet.GoogLeNetConfig`)
  beside `model.weights.h5`, the best trial's weights, so that
  `keras_googlenet.load_model_folder(directory)` rebuilds the trained model;
- `best_config.json`: the same configuration as plain `GoogLeNet` keyword
  arguments (`GoogLeNet(**json.load(f))`); `best_trial.json`: its score, cost
  and hyperparameter values.
"""

import json
import os
import shutil
from pathlib import Path

from keras_googlenet.architecture import STAGE_BLOCKS
from keras_googlenet.config import MODEL_CONFIG_FILE, WEIGHTS_FILE
from keras_googlenet._internal.fileio import atomic_path, atomic_write_json, atomic_write_text
from keras_googlenet._internal.values import is_int
from training.checks import is_num
from training.config import RESUME_INDEPENDENT
from tuner.chart import TRIALS_CHART, write_trials_chart
from tuner.space import SearchSpace, shares

#: keras-tuner project folder inside the search folder.
PROJECT = "tuner"

#: Files and folders of a search folder (what --overwrite removes, with the
#: best model's weights, `WEIGHTS_FILE`).
SEARCH_FILES = ("search.json", PROJECT, "logs", "summary.md", "trials.json", TRIALS_CHART,
                "best_config.json", "best_trial.json", MODEL_CONFIG_FILE)

#: The weights file of a keras-tuner trial (in `PROJECT/trial_<id>/`).
TRIAL_WEIGHTS = "checkpoint.weights.h5"

#: Format version of search.json.
FINGERPRINT_FORMAT = 1

#: Key of search.json recording the KERASTUNER_TUNER_ID that created the search
#: (not part of the fingerprint).
TUNER_ID_KEY = "tuner_id"

#: TrainConfig settings that do not change what a trial computes (they may
#: differ between runs of one search, and between its chief and workers).
_NOT_FINGERPRINTED = set(RESUME_INDEPENDENT) | {
    "name", "runs_dir", "export_dir", "export", "strategy", "width",
}


class SearchError(ValueError):
    """The search folder forbids this search; one line for the user."""


def fingerprint(config, space, tuner, max_mflops, max_params, fill_budget):
    """What defines a search: compared when a search folder is reused."""
    values = config.to_dict()
    values.update(values.pop("model"))  # flat, as search.json has always recorded it
    train = {k: v for k, v in values.items() if k not in _NOT_FINGERPRINTED}
    fp = {
        "format": FINGERPRINT_FORMAT,
        "objective": "val_main_accuracy (max)",
        "tuner": tuner,
        "max_mflops": max_mflops,
        "max_params": max_params,
        "fill_budget": fill_budget,
        "space": space.to_dict(),
        "train_config": train,
    }
    return json.loads(json.dumps(fp))  # normalise tuples to lists


def _differences(old, new, prefix=""):
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k, "<missing>"), new.get(k, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} ({a!r} there, {b!r} now)")
    return out


def _read_json(path):
    """A JSON object from `path`, or SearchError naming the file and offering --overwrite."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or " ".join(str(e).split())
        raise SearchError(
            f"{path} is damaged or unreadable ({why}); pass --overwrite to start the search over"
        ) from e
    if not isinstance(doc, dict):
        raise SearchError(
            f"{path} is damaged (not a JSON object); pass --overwrite to start the search over"
        )
    return doc


def _is_str_list(value):
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_str_dict(value, valid):
    return isinstance(value, dict) and all(valid(v) for v in value.values())


def _is_optional_str(value):
    return value is None or isinstance(value, str)


#: What keras-tuner's `Oracle.set_state` reads from `oracle.json`: key, check,
#: what is expected (its subclasses' extra keys are checked by keras-tuner).
_ORACLE_STATE = (
    ("ongoing_trials", lambda v: _is_str_dict(v, lambda x: isinstance(x, str)),
     "an object of tuner id to trial id"),
    ("hyperparameters", lambda v: isinstance(v, dict) and isinstance(v.get("space"), list)
     and isinstance(v.get("values"), dict), 'an object with a "space" list and a "values" object'),
    ("start_order", _is_str_list, "a list of trial ids"),
    ("end_order", _is_str_list, "a list of trial ids"),
    ("run_times", lambda v: _is_str_dict(v, is_int), "an object of trial id to an integer"),
    ("retry_queue", _is_str_list, "a list of trial ids"),
    ("seed", lambda v: v is None or is_int(v), "an integer or null"),
    ("seed_state", lambda v: v is None or is_int(v), "an integer or null"),
    ("tried_so_far", _is_str_list, "a list of strings"),
    ("id_to_hash", lambda v: _is_str_dict(v, _is_optional_str), "an object of trial id to a string"),
    ("display", lambda v: isinstance(v, dict) and _is_optional_str(v.get("search_start"))
     and _is_str_dict(v.get("trial_start"), lambda x: isinstance(x, str))
     and _is_str_dict(v.get("trial_number"), is_int),
     'an object with "search_start", "trial_start" and "trial_number"'),
)

#: The statuses of a keras-tuner trial (`keras_tuner.engine.trial.TrialStatus`).
TRIAL_STATUSES = ("RUNNING", "IDLE", "INVALID", "STOPPED", "COMPLETED", "FAILED")

#: What keras-tuner's `Trial.set_state` (and `trial_rows`) reads from a
#: `trial_<id>/trial.json`: key, check, what is expected.
_TRIAL_STATE = (
    ("trial_id", lambda v: isinstance(v, str), "a string"),
    ("hyperparameters", lambda v: isinstance(v, dict) and isinstance(v.get("space"), list)
     and isinstance(v.get("values"), dict), 'an object with a "space" list and a "values" object'),
    ("metrics", lambda v: isinstance(v, dict) and _is_str_dict(v.get("metrics"), lambda m: (
        isinstance(m, dict) and isinstance(m.get("direction"), str)
        and isinstance(m.get("observations"), list))),
     'an object with a "metrics" object of metric histories'),
    ("score", lambda v: v is None or is_num(v), "a finite number or null"),
    ("best_step", is_int, "an integer"),
    ("status", lambda v: v in TRIAL_STATUSES, f"one of {', '.join(TRIAL_STATUSES)}"),
    ("message", _is_optional_str, "a string or null"),
)


def _damaged(path, why):
    return SearchError(f"{path} is damaged: {why}; pass --overwrite to start the search over")


def _check_state(path, doc, schema):
    for key, valid, expected in schema:
        if key not in doc:
            raise _damaged(path, f"it has no {key!r} (expected {expected})")
        if not valid(doc[key]):
            shown = json.dumps(doc[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise _damaged(path, f"{key!r} is {shown}, expected {expected}")


def _check_trial(path, doc):
    """Checks one `trial_<id>/trial.json` (its keys, and the searched values)."""
    _check_state(path, doc, _TRIAL_STATE)
    folder_id = path.parent.name[len("trial_"):]
    if doc["trial_id"] != folder_id:
        raise _damaged(path, f"'trial_id' is {json.dumps(doc['trial_id'])}, expected "
                             f"{json.dumps(folder_id)} (its folder's)")
    values = doc["hyperparameters"]["values"]
    for name in SearchSpace().default_values():
        if name in values and not is_num(values[name]):
            raise _damaged(path, f"the value of {name!r} is {json.dumps(values[name])[:60]}, "
                                 "expected a finite number")


def check_tuner_files(project):
    """Checks keras-tuner's state files in `project` before a search resumes from them.

    keras-tuner reads them without checks, and some damage surfaces only once a
    trial has trained (a score that is not a number) or as a crash (a `trial_*`
    that is not a folder). Every `trial_*` must be a folder; `oracle.json` and
    every `trial_*/trial.json` must hold what keras-tuner reads from them, and
    the trials the oracle names must be trials of the project.

    Raises:
        SearchError: Naming the file and what was expected.
    """
    project = Path(project)
    trials = set()
    for entry in sorted(project.glob("trial_*")):
        if not entry.is_dir():
            raise SearchError(
                f"{entry} is not a folder (keras-tuner keeps a trial's files in one); "
                "pass --overwrite to start the search over")
        path = entry / "trial.json"
        if path.exists():
            doc = _read_json(path)
            _check_trial(path, doc)
            trials.add(doc["trial_id"])
    path = project / "oracle.json"
    if not path.exists():
        return
    doc = _read_json(path)
    _check_state(path, doc, _ORACLE_STATE)
    for key in ("ongoing_trials", "start_order", "end_order", "retry_queue"):
        ids = doc[key].values() if isinstance(doc[key], dict) else doc[key]
        for trial_id in ids:
            if trial_id not in trials:
                raise _damaged(path, f"{key!r} names trial {json.dumps(trial_id)[:60]}, expected "
                                     f"a trial of the project (a trial_<id>/trial.json)")


def recorded_tuner_id(directory):
    """The KERASTUNER_TUNER_ID that created the search in `directory` (None if unknown)."""
    path = Path(directory) / "search.json"
    return _read_json(path).get(TUNER_ID_KEY) if path.exists() else None


def check_tuner_state(directory, tuner_id):
    """Refuses to resume from damaged keras-tuner files, or under another tuner id.

    keras-tuner reloads a search only when the project holds the state file of
    the process's own `KERASTUNER_TUNER_ID` (`<id>.json`); under another id it
    silently starts over, overwriting the earlier trials. So a resume under an
    id other than the creator's is refused, saying which id to set.

    Raises:
        SearchError: Naming the damaged file or the id to set.
    """
    project = Path(directory) / PROJECT
    check_tuner_files(project)
    for path in sorted(project.glob("*.json")):
        _read_json(path)
    if not (project / "oracle.json").exists() or (project / f"{tuner_id}.json").exists():
        return
    creator = recorded_tuner_id(directory)
    if creator == tuner_id:
        raise SearchError(
            f"{project / (tuner_id + '.json')} is missing, so keras-tuner cannot resume the "
            "search; pass --overwrite to start the search over"
        )
    if creator is None:
        found = sorted(p.stem for p in project.glob("*.json") if p.name != "oracle.json")
        creator = found[0] if len(found) == 1 else " or ".join(found) or "?"
    raise SearchError(
        f"{directory} was created with KERASTUNER_TUNER_ID={creator} but this process has "
        f"KERASTUNER_TUNER_ID={tuner_id}, under which keras-tuner would start over: set "
        f"KERASTUNER_TUNER_ID={creator} (tuner0 is the default when it is unset) to resume, "
        "or pass --overwrite to start over"
    )


def check_directory(directory, fp, overwrite):
    """Refuses a search folder made with other settings; returns "new" or "resume"."""
    directory = Path(directory)
    path = directory / "search.json"
    if overwrite:
        return "new"
    if path.exists():
        old = _read_json(path)
        old.pop(TUNER_ID_KEY, None)
        diff = _differences(old, fp)
        if diff:
            raise SearchError(
                f"{directory} holds a search made with a different search space or settings "
                f"(differs in {'; '.join(diff[:4])}{'; ...' if len(diff) > 4 else ''}); "
                "re-run with the original flags to resume it, use another --directory, "
                "or pass --overwrite to start over"
            )
        return "resume"
    if (directory / PROJECT).exists():
        raise SearchError(
            f"{directory / PROJECT} exists but {path} does not: not a search folder of this "
            "command; use another --directory or pass --overwrite"
        )
    return "new"


def clear_directory(directory):
    """Removes the files of a search (only those: the folder may hold others)."""
    for name in (*SEARCH_FILES, WEIGHTS_FILE):
        path = Path(directory) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def trial_rows(oracle, hypermodel):
    """One dict per trial: id, status, score, epochs, MFLOPs, params, ratios."""
    rows = []
    for trial in oracle.trials.values():
        values = {**hypermodel.space.default_values(), **trial.hyperparameters.values}
        mflops, params = hypermodel.budget.measure(values)
        rows.append({
            "trial_id": trial.trial_id,
            "status": trial.status,
            "score": None if trial.score is None else float(trial.score),
            "epochs": values.get("tuner/epochs", hypermodel.config.epochs),
            "mflops": round(mflops, 3),
            "params": params,
            "width": values["width"],
            "shares": {s: [round(x, 4) for x in shares(values, s)] for s in STAGE_BLOCKS},
            "reductions": {s: [values[f"stage{s}_reduce_3x3"], values[f"stage{s}_reduce_5x5"]]
                           for s in STAGE_BLOCKS},
            "values": {k: v for k, v in values.items() if not k.startswith("tuner/")},
        })
    rows.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0.0), r["trial_id"]))
    return rows


def summary_table(rows):
    """A markdown table of `trial_rows` (shares in % of a block's output)."""
    lines = [
        "| trial | status | val_main_accuracy | epochs | MFLOPs | params (deployed) | width | "
        "stage 3 shares / reductions | stage 4 | stage 5 |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        stages = [
            "/".join(f"{100 * x:.0f}" for x in r["shares"][s])
            + " r " + "/".join(f"{x:g}" for x in r["reductions"][s])
            for s in STAGE_BLOCKS
        ]
        score = "-" if r["score"] is None else f"{r['score']:.4f}"
        lines.append(
            f"| {r['trial_id']} | {r['status']} | {score} | {r['epochs']} | {r['mflops']:.2f} | "
            f"{r['params']:,} | {r['width']:g} | " + " | ".join(stages) + " |"
        )
    lines.append("")
    lines.append("trial: keras-tuner's trial id (0-based; the search log numbers trials from "
                 "1). MFLOPs and params (deployed): the main-head network that is exported, "
                 "without the auxiliary heads.")
    lines.append("Shares: % of a block's output channels in the 1x1/3x3/5x5/pool-projection "
                 "branches; r: 3x3/5x5 reduction channels per convolution channel.")
    return "\n".join(lines)


def write_results(directory, oracle, hypermodel):
    """Writes summary.md, trials.json, trials.png, the best configuration and best_trial.json.

    trials.png is a picture: if it cannot be drawn, one line says so and the
    other files are written all the same.

    The best configuration is `model_config.json` (beside the best trial's
    weights, `model.weights.h5`, when keras-tuner kept them) and
    `best_config.json`.

    Returns:
        `(rows, best model's GoogLeNetConfig or None)`.
    """
    directory = Path(directory)
    rows = trial_rows(oracle, hypermodel)
    table = summary_table(rows)
    atomic_write_text(directory / "summary.md", table + "\n")
    atomic_write_json(directory / "trials.json", rows)
    write_trials_chart(directory, rows, hypermodel)
    completed = [r for r in rows if r["status"] == "COMPLETED" and r["score"] is not None]
    if not completed:
        return rows, None
    best = completed[0]
    model_config = hypermodel.model_config(best["values"])
    save_best_model(directory, model_config, best["trial_id"])
    atomic_write_json(directory / "best_config.json", model_config.to_dict())
    atomic_write_json(directory / "best_trial.json", best)
    return rows, model_config


def save_best_model(directory, model_config, trial_id):
    """Makes `directory` a model folder of the best trial.

    Writes `model_config.json` and copies the trial's weights to
    `model.weights.h5` (removing a previous best's weights if this trial kept
    none), so that `keras_googlenet.load_model_folder(directory)` works.
    """
    directory = Path(directory)
    model_config.save(directory / MODEL_CONFIG_FILE)
    trial_weights = directory / PROJECT / f"trial_{trial_id}" / TRIAL_WEIGHTS
    weights = directory / WEIGHTS_FILE
    if trial_weights.is_file():
        with atomic_path(weights) as tmp:
            shutil.copyfile(trial_weights, tmp)
    elif weights.exists():
        os.remove(weights)
