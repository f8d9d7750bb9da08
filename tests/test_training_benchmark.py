"""`python -m benchmarks.input_pipeline --quick` (the CI smoke mode)."""

import json

from benchmarks.input_pipeline import main


def test_input_pipeline_benchmark_quick_mode_writes_a_table_and_json(tmp_path, capsys):
    output = tmp_path / "input_pipeline.json"
    assert main(["--quick", "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    rows = {r["pipeline"]: r for r in result["results"]}
    assert set(rows) == {"tf.data", "numpy PyDataset (1 thread)"}
    assert all(r["images_per_second"] > 0 for r in rows.values())
    assert (result["image_size"], result["batch_size"]) == (32, 128)
    table = capsys.readouterr().out
    assert "| augmented training batches | tf.data |" in table
