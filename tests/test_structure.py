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
    assert pattern.search(home.read_text(encoding="utf-8")) or fact == "the paper's block outputs"
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
