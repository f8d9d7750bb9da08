"""The codebase's structure: import contracts, module sizes, facts written once.

The import contracts are in setup.cfg (`[importlinter]`): scripts sit above the
library (benchmarks > tuner > training > keras_googlenet), the library's own
layers, and no import cycles between sibling modules anywhere.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("keras_googlenet", "training", "tuner", "benchmarks")
MAX_LINES = 500


def _lint_imports(cwd):
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    return subprocess.run([lint, "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _sources(packages=PACKAGES):
    for package in packages:
        yield from sorted((REPO / package).rglob("*.py"))


def test_import_contracts_are_kept():
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_library_module_importing_training_breaks_the_contract(tmp_path):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "results"))
    shutil.copy(REPO / "setup.cfg", tmp_path / "setup.cfg")
    (tmp_path / "keras_googlenet" / "reach_up.py").write_text("import training.cifar\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "keras_googlenet is not allowed to import training" in result.stdout
    assert "keras_googlenet.reach_up -> training.cifar" in result.stdout


@pytest.mark.parametrize("folder", [*PACKAGES, "tests"])
def test_no_module_is_over_500_lines(folder):
    long = {}
    for path in sorted((REPO / folder).rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            long[str(path.relative_to(REPO))] = lines
    assert not long, f"modules over {MAX_LINES} lines: {long}"


#: Architecture facts as they would be written out again by hand.
FACT_PATTERNS = {
    "a row of the block table": r"\(\s*64,\s*96,\s*128,\s*16,\s*32,\s*32\s*\)"
                                r"|\(\s*384,\s*192,\s*384,\s*48,\s*128,\s*128\s*\)",
    "the block names": r"[\"']3a[\"'],\s*[\"']3b[\"'],\s*[\"']4a[\"']",
    "the head names": r"[\"']aux1[\"'],\s*[\"']aux2[\"'],\s*[\"']main[\"']",
    "where the auxiliary heads attach": r"[\"']aux1[\"']\s*:\s*[\"']4a[\"']",
    "the stems' minimum sizes": r"[\"']cifar[\"']\s*:\s*16|[\"']imagenet[\"']\s*:\s*64",
    "the paper's block outputs": r"[\"']3a[\"']\s*:\s*256",
}


@pytest.mark.parametrize("fact", sorted(FACT_PATTERNS))
def test_architecture_facts_are_written_once(fact):
    pattern = re.compile(FACT_PATTERNS[fact])
    home = REPO / "keras_googlenet" / "architecture.py"
    derived = ("the paper's block outputs", "the head names")  # computed there from other facts
    assert pattern.search(home.read_text(encoding="utf-8")) or fact in derived
    elsewhere = [str(p.relative_to(REPO)) for p in _sources()
                 if p != home and pattern.search(p.read_text(encoding="utf-8"))]
    assert not elsewhere, f"{fact} written again in {elsewhere}; import keras_googlenet.architecture"


def test_benchmarks_are_not_installed_as_a_top_level_package():
    text = (REPO / "setup.cfg").read_text(encoding="utf-8")
    include = text.split("[options.packages.find]", 1)[1].split("[", 1)[0]
    assert "benchmarks" not in re.sub(r"#.*", "", include)
    base = text.split("install_requires =", 1)[1].split("\n[", 1)[0]
    requirements = [line.strip() for line in base.splitlines() if line.strip()
                    and not line.strip().startswith("#")]
    assert [re.split(r"[<>=\[]", r)[0] for r in requirements] == ["keras", "numpy"]


@pytest.mark.slow
def test_base_install_builds_the_model_without_tensorflow(tmp_path):
    """`pip install .` with no extras (plus JAX as the backend) is enough for the model."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         str(REPO), "jax"], capture_output=True, text=True, timeout=1200,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    code = (
        "import importlib.util, numpy as np, keras_googlenet as kg\n"
        "assert importlib.util.find_spec('tensorflow') is None, 'TensorFlow got installed'\n"
        "m = kg.GoogLeNet(stem='cifar', classes=10, width=0.25)\n"
        "out = m.predict(np.zeros((1, 32, 32, 3)), verbose=0)\n"
        "print(m.count_params(), [tuple(o.shape) for o in out])\n"
    )
    run = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=900, env={"KERAS_BACKEND": "jax", "PATH": "/usr/bin:/bin",
                                                      "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    import keras_googlenet as kg

    expected = kg.GoogLeNet(stem="cifar", classes=10, width=0.25).count_params()
    assert run.stdout.strip().splitlines()[-1] == f"{expected} [(1, 10), (1, 10), (1, 10)]"


def _readme_setup_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Set-up", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_setup_commands_in_a_new_environment():
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    between = script.split("# --- README set-up (begin) ---\n", 1)[1]
    between = between.split("# --- README set-up (end) ---", 1)[0]
    commands = [line for line in between.splitlines() if line.strip()]
    assert commands == _readme_setup_commands()
    assert len(commands) == 2 and "python -m pytest" in commands[1]
    before = script.split("# --- README set-up (begin) ---", 1)[0]
    assert "venv" in before and "source" in before  # a new environment, and it is used
    assert "pip install" not in before  # nothing installed outside the README's commands


#: Rules with one definition each: name -> the module that defines it (the
#: library; training and the tuner import it from there).
RULES = {
    "MAX_WIDTH": "keras_googlenet/config.py",
    "TORCH_SUFFIXES": "keras_googlenet/torch_weights.py",
    "is_block_table": "keras_googlenet/architecture.py",
    "is_int": "keras_googlenet/_internal/values.py",
    "argument_conflicts": "keras_googlenet/pretrained.py",
}
#: The copies they replaced, which must not come back.
REPLACED = ("_as_int",)
RULE_PACKAGES = ("keras_googlenet", "training", "tuner")


def _definitions(name):
    pattern = re.compile(rf"^\s*(?:def {re.escape(name)}\(|{re.escape(name)}\s*[:=][^=])", re.M)
    return [str(p.relative_to(REPO)) for p in _sources(RULE_PACKAGES)
            for _ in pattern.finditer(p.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("name", sorted(RULES))
def test_each_rule_is_defined_once(name):
    assert _definitions(name) == [RULES[name]]


@pytest.mark.parametrize("name", REPLACED)
def test_replaced_copies_of_rules_are_gone(name):
    assert not _definitions(name)


def test_no_comment_cites_an_issue_number():
    pattern = re.compile(r"issues? #?[0-9]")
    cited = [str(p.relative_to(REPO)) for p in _sources((*PACKAGES, "tests"))
             if p.name != "test_structure.py" and pattern.search(p.read_text(encoding="utf-8"))]
    assert not cited, f"state the fact without the issue number (git has the history): {cited}"


def test_a_flag_declared_once_reaches_help_validation_config_json_and_resume(tmp_path, monkeypatch):
    """One `flag(...)` field is the whole of a new setting: its argument in `--help`, its
    check in `validate`, its place in config.json, its legacy value and resume rule."""
    import dataclasses
    import json

    import training.flags
    from training.checks import FRACTION
    from training.config import ConfigError, TrainConfig
    from training.fields import MAY_CHANGE, flag

    @dataclasses.dataclass
    class WithNewFlags(TrainConfig):
        mix_alpha: float = flag(0.0, "strength of a throwaway augmentation", group="recipe",
                                checks=(FRACTION,), legacy=0.0)
        log_note: str = flag("", "a throwaway note", group="run", resume=MAY_CHANGE)

    monkeypatch.setattr(training.flags, "TrainConfig", WithNewFlags)
    help_text = " ".join(training.flags.build_parser().format_help().split())
    recipe = help_text.split("recipe:", 1)[1].split("system:", 1)[0]
    assert "--mix-alpha MIX_ALPHA strength of a throwaway augmentation (default: 0.0)" in recipe
    assert "--log-note LOG_NOTE a throwaway note" in help_text.split("data:", 1)[0]

    with pytest.raises(ConfigError, match=re.escape("--mix-alpha must be in [0, 1); got 1.5")):
        training.flags.config_from_args(["--mix-alpha", "1.5"]).resolve()

    config = training.flags.config_from_args(
        ["--mix-alpha", "0.25", "--log-note", "a", "--runs-dir", str(tmp_path)]).resolve()
    assert type(config) is WithNewFlags and config.mix_alpha == 0.25
    config.save(tmp_path / "config.json")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["mix_alpha"], saved["log_note"]) == (0.25, "a")
    assert WithNewFlags.load(tmp_path / "config.json") == config
    older = {k: v for k, v in saved.items() if k != "mix_alpha"}  # a run saved before the flag
    assert WithNewFlags.from_dict(older).mix_alpha == 0.0
    assert config.resume_differences(dataclasses.replace(config, log_note="b")) == []
    assert config.resume_differences(dataclasses.replace(config, mix_alpha=0.5)) == ["mix_alpha"]


def test_a_network_setting_declared_once_reaches_help_validation_and_config_json(tmp_path,
                                                                                 monkeypatch):
    """A `GoogLeNetConfig` argument becomes a flag with one `setting(...)` in
    `TrainConfig.model`'s declaration: its default and type are the library's, and the
    library's check rejects a bad value, said with the flag's name."""
    import dataclasses
    import json

    import training.flags
    from training.config import ConfigError, TrainConfig, default_model
    from training.fields import nested, setting

    declared = dataclasses.fields(TrainConfig)
    model_settings = next(f for f in declared if f.name == "model").metadata["nested"]

    @dataclasses.dataclass
    class WithNewSetting(TrainConfig):
        model: object = nested(default_model, group="model", settings={
            **model_settings, "include_preprocessing": setting("rescale pixels in the model")})

    monkeypatch.setattr(training.flags, "TrainConfig", WithNewSetting)
    help_text = " ".join(training.flags.build_parser().format_help().split())
    model_group = help_text.split("model:", 1)[1].split("recipe:", 1)[0]
    assert ("--include-preprocessing, --no-include-preprocessing rescale pixels in the model "
            "(default: True)") in model_group

    config = training.flags.config_from_args(["--no-include-preprocessing"]).resolve()
    assert config.model.include_preprocessing is False
    assert config.model_config(10).include_preprocessing is False
    config.save(tmp_path / "config.json")
    assert json.loads((tmp_path / "config.json").read_text())["model"]["include_preprocessing"] is False
    assert WithNewSetting.load(tmp_path / "config.json") == config
    bad = dataclasses.replace(config, model=dataclasses.replace(config.model,
                                                                include_preprocessing="no"))
    with pytest.raises(ConfigError, match=re.escape(
            "--include-preprocessing must be True or False; got 'no'")):
        bad.validate()
