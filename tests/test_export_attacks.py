"""Attacks on replacing an export: a kill at any instant leaves the old
or the new export at the final path, leftovers are cleaned on the next run, and
bad `--seed` values are one-line errors."""

import os
import subprocess
import sys
import textwrap
import threading

import pytest

from keras_googlenet._internal import fileio

# ---- atomic_directory: the final path is never absent ---------------------------


def _write_tree(tmp, tag):
    os.makedirs(os.path.join(tmp, "variables"))
    for name in ("saved_model.pb", "variables/data", "report.json"):
        with open(os.path.join(tmp, name), "w") as f:
            f.write(tag)


def _tag(directory):
    with open(os.path.join(directory, "report.json")) as f:
        return f.read()


def test_replace_loop_never_leaves_the_path_absent(tmp_path):
    target = tmp_path / "export"
    with fileio.atomic_directory(target) as tmp:
        _write_tree(tmp, "0")
    missing, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            if not os.path.isdir(target) or not os.path.isfile(target / "report.json"):
                missing.append(1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(1, 200):
            with fileio.atomic_directory(target, overwrite=True) as tmp:
                _write_tree(tmp, str(i))
    finally:
        stop.set()
        watcher.join()
    assert fileio.exchange_paths is not None
    assert not missing, f"the export was absent {len(missing)} times"
    assert _tag(target) == "199"
    assert sorted(os.listdir(tmp_path)) == ["export"]  # no temporary sibling left


def test_exchange_paths_swaps_and_fallback_is_used_without_it(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    assert fileio.exchange_paths(a, b)  # Linux with renameat2 (the CI machines)
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"
    # Where the system has no atomic exchange, the two renames still replace the tree.
    monkeypatch.setattr(fileio, "_renameat2", lambda: None)
    assert not fileio.exchange_paths(a, b)
    with fileio.atomic_directory(a, overwrite=True) as tmp:
        _write_tree(tmp, "new")
    assert _tag(a) == "new" and sorted(os.listdir(tmp_path)) == ["a", "b"]


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    from keras_googlenet._internal import fileio
    target, step = sys.argv[1], sys.argv[2]
    real_exchange, real_rmtree = fileio.exchange_paths, fileio.shutil.rmtree
    def exchange(a, b):
        if step == "before_exchange":
            os._exit(9)
        done = real_exchange(a, b)
        if step == "after_exchange":
            os._exit(9)
        return done
    fileio.exchange_paths = exchange
    if step == "while_writing":
        with fileio.atomic_directory(target, overwrite=True) as tmp:
            open(os.path.join(tmp, "report.json"), "w").write("half")
            os._exit(9)
    with fileio.atomic_directory(target, overwrite=True) as tmp:
        os.makedirs(os.path.join(tmp, "variables"))
        open(os.path.join(tmp, "report.json"), "w").write("new")
""")


@pytest.mark.parametrize("step", ["while_writing", "before_exchange", "after_exchange"])
def test_kill_at_each_step_leaves_old_or_new_and_next_run_cleans(tmp_path, repo, step):
    target = tmp_path / "export"
    with fileio.atomic_directory(target) as tmp:
        _write_tree(tmp, "old")
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(target), step], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert _tag(target) == ("new" if step == "after_exchange" else "old")
    leftovers = [n for n in os.listdir(tmp_path) if n != "export"]
    assert leftovers and all(n.startswith(fileio.TMP_PREFIX) for n in leftovers)
    # The next write of the same folder removes what the killed process left.
    with fileio.atomic_directory(target, overwrite=True) as tmp:
        _write_tree(tmp, "next")
    assert _tag(target) == "next" and os.listdir(tmp_path) == ["export"]


def test_cleanup_spares_live_writers_and_other_names(tmp_path):
    target = tmp_path / "export"
    mine = fileio.temporary_directory_sibling(target)  # this process: alive
    other_name = fileio.temporary_directory_sibling(tmp_path / "export-b")
    dead = tmp_path / f"{fileio.TMP_PREFIX}999999999-export-abc_12"  # no such process
    dead.mkdir()
    unrelated = tmp_path / ".tmp-notes"
    unrelated.write_text("keep")
    fileio.remove_stale_siblings(target)
    assert os.path.isdir(mine) and os.path.isdir(other_name) and unrelated.exists()
    assert not dead.exists()


# ---- the export: system temp folder, seeds -------------------------------------


@pytest.mark.slow
@pytest.mark.backends("tensorflow")
def test_export_leaves_nothing_in_the_system_temp_folder(tmp_path, repo):
    """Kill the CLI mid-export (after the batch-1 SavedModel and TF's autograph files
    exist), then export again: nothing of the killed run is left anywhere."""
    script = textwrap.dedent("""
        import os, sys
        sys.path.insert(0, "tests")
        from export_helpers import tiny_config
        from keras_googlenet import build_model
        from keras_googlenet.export import exporter
        import training.export as cli
        build_model(tiny_config()).save(sys.argv[1])
        if sys.argv[3] == "kill":
            def convert(*args, **kwargs):
                os._exit(9)
            exporter.convert_saved_model = convert
        sys.exit(cli.main([sys.argv[1], "--name", "e", "--export-dir", sys.argv[2],
                           "--formats", "saved_model,float32", "--repeats", "1",
                           "--eval-samples", "2", "--overwrite"]))
    """)
    system_tmp = tmp_path / "system_tmp"
    system_tmp.mkdir()
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": repo, "TMPDIR": str(system_tmp)}
    for mode, code in (("kill", 9), ("ok", 0)):
        proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.keras"),
                               str(out), mode], env=env, cwd=repo, capture_output=True,
                              text=True, timeout=1200)
        assert proc.returncode == code, proc.stderr[-2000:]
        assert os.listdir(system_tmp) == []
        if mode == "kill":
            assert any(n.startswith(fileio.TMP_PREFIX) for n in os.listdir(out))
    assert os.listdir(out) == ["e"]
    assert "model_float32.tflite" in os.listdir(out / "e")


@pytest.mark.parametrize("seed", ["-1", "-5", "4294967296", "1e3", "x"])
def test_export_bad_seed_is_one_line(tmp_path, seed, capsys):
    from training import export as cli

    status = cli.main([str(tmp_path / "missing.keras"), "--name", "e",
                       "--export-dir", str(tmp_path), "--seed", seed])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error:") and "--seed" in err and len(err.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []


@pytest.mark.backends("tensorflow")
@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_library_export_bad_seed(tmp_path, seed):
    from export_helpers import tiny_config

    from keras_googlenet import build_model
    from keras_googlenet import export as ex

    with pytest.raises(ex.ExportError, match="seed"):
        ex.export(build_model(tiny_config()), tmp_path / "e", seed=seed, formats="saved_model")
    assert not os.path.exists(tmp_path / "e")


# ---- run folders whose JSON files are hostile --------------------------------------

DEEP_JSON = "[" * 100000 + "]" * 100000


@pytest.mark.parametrize("file, text", [
    ("model_config.json", DEEP_JSON),
    ("config.json", DEEP_JSON),
    ("config.json", "[1, 2]"),
], ids=["deep_model_config", "deep_config", "list_config"])
def test_export_of_a_run_with_hostile_json_is_one_line(tmp_path, capsys, file, text):
    from training import export as cli

    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"not read: the JSON files are read first")
    (run / file).write_text(text)
    status = cli.main([str(run), "--name", "e", "--export-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0
    assert len(err) == 1 and err[0].startswith("error: ") and str(run / file) in err[0], err
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


# ---- load_model_folder on an export ------------------------------------------------


@pytest.mark.slow
@pytest.mark.backends("tensorflow")
def test_load_model_folder_rebuilds_an_export(tmp_path):
    import numpy as np
    from export_helpers import make_images, tiny_config

    from keras_googlenet import build_model, load_model_folder
    from keras_googlenet import export as ex

    model = build_model(tiny_config())
    ex.export(model, tmp_path / "e", formats="saved_model", config=tiny_config(), repeats=1,
              eval_samples=4, log=lambda msg: None)
    loaded = load_model_folder(tmp_path / "e")
    x = make_images(4, seed=1)[0].astype("float32")
    for a, b in zip(model.predict(x, verbose=0), loaded.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---- labels: the class names training refuses ----------------------------------------


@pytest.mark.backends("tensorflow")
@pytest.mark.parametrize("bad", ["a\x1bb", "a\u202eb", "a\u2028b", "a\x00b", "a\x0bb", "a\x0cb",
                                 "a\x85b"], ids=ascii)
def test_export_refuses_the_labels_training_refuses(tmp_path, bad):
    from export_helpers import tiny_config

    from keras_googlenet import build_model
    from keras_googlenet import export as ex

    with pytest.raises(ex.ExportError, match="Invalid label") as info:
        ex.export(build_model(tiny_config()), tmp_path / "e", formats="float32",
                  labels=["a", bad, "c"], repeats=1, eval_samples=2, log=lambda msg: None)
    assert len(str(info.value).splitlines()) == 1 and repr(bad) in str(info.value)
    assert not (tmp_path / "e").exists()


# ---- a run folder whose model_config.json does not describe its model.keras -----------


@pytest.mark.backends("tensorflow")
@pytest.mark.parametrize("change", [dict(width=0.5), dict(stem="imagenet")], ids=repr)
def test_export_refuses_a_model_config_that_lies(tmp_path, capsys, change):
    from export_helpers import tiny_config

    from keras_googlenet import build_model
    from training import export as cli

    run = tmp_path / "run"
    run.mkdir()
    build_model(tiny_config()).save(run / "model.keras")
    tiny_config().replace(**change).save(run / "model_config.json")
    status = cli.main([str(run), "--name", "e", "--export-dir", str(tmp_path / "out"),
                       "--formats", "float32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0
    assert len(err) == 1 and err[0].startswith("error: ") and "model_config.json" in err[0], err
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


# ---- a run folder whose config.json does not describe its model's input ----------------


@pytest.mark.backends("tensorflow")
def test_export_checks_the_runs_image_size_before_decoding(tmp_path, capsys, monkeypatch):
    """A tampered `image_size: 4096` is refused before the run's data is decoded for
    the int8 calibration (it decoded every image at 4096x4096 first)."""
    from export_helpers import SIZE, tiny_config

    import training.data
    from keras_googlenet import build_model
    from training import export as cli
    from training.config import TrainConfig, default_model

    def no_decoding(config):
        raise AssertionError(f"decoded the run's data at image_size={config.image_size}")

    monkeypatch.setattr(training.data, "load_arrays", no_decoding)
    run = tmp_path / "run"
    run.mkdir()
    build_model(tiny_config()).save(run / "model.keras")
    TrainConfig(data="synthetic", image_size=4096, model=default_model(stem="cifar")).save(
        run / "config.json")
    status = cli.main([str(run), "--name", "e", "--export-dir", str(tmp_path / "out"),
                       "--formats", "int8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and err[-1] == (
        f"error: {run / 'config.json'}: the run's images must be the model's input size "
        f"({SIZE}, {SIZE}). Received: image_size=4096"), err
    assert not [line for line in err[:-1] if line.startswith("error")], err
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []
