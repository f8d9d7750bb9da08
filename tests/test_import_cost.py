"""`python -m benchmarks.import_cost`: the library's Keras-free entry points stay Keras-free."""

import json

import pytest

from benchmarks.import_cost import main


@pytest.mark.slow
def test_import_cost_benchmark_writes_a_table_and_json(tmp_path, capsys):
    output = tmp_path / "import_cost.json"
    assert main(["--repeats", "1", "--output", str(output)]) == 0
    doc = json.loads(output.read_text())
    rows = {r["label"].split(":")[0]: r for r in doc["results"]}
    for keras_free in ("facts", "config", "tuner cost model (tuner.cost)"):
        assert rows[keras_free]["imports_keras"] is False, rows[keras_free]
        assert rows[keras_free]["imports_tensorflow"] is False
    assert rows["model"]["imports_keras"] is True
    assert rows["facts"]["modules"] < rows["model"]["modules"]
    assert doc["environment"]["cpu_count"] >= 1
    assert "| entry point |" in capsys.readouterr().out
