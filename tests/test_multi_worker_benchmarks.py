"""The multi-process benchmarks, as quick runs on JAX with TensorFlow hidden:
`train_throughput --processes 1,2` (images/s of one against two processes, and
the timed all-reduce), `scaling_model` on its output, `reduction_order --quick`."""

import math

import pytest
from distributed_helpers import jax_env
from training_helpers import BenchmarkRuns

from benchmarks import scaling_model


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The three benchmark commands, each run on the first test that needs it."""
    tmp = tmp_path_factory.mktemp("multi-worker-bench")
    env = dict(jax_env(tmp / "hide_tensorflow"), TF_CPP_MIN_LOG_LEVEL="2")
    throughput = tmp / "throughput.json"
    commands = {
        "train_throughput": (
            ["benchmarks.train_throughput", "--backends", "jax", "--jit", "on", "--processes",
             "1,2", "--inputs", "cifar:32", "--widths", "0.125", "--batch-sizes", "8",
             "--steps", "2", "--warmup-steps", "1", "--repeats", "1",
             "--pipeline-json", "", "--output", str(throughput)],  # no pipeline comparison
            env, throughput, ()),
        # The scaling model reads the throughput's JSON: that one runs first.
        "scaling_model": (["benchmarks.scaling_model", "--throughput", str(throughput),
                           "--output", str(tmp / "scaling.json")], env, tmp / "scaling.json",
                          ("train_throughput",)),
        "reduction_order": (["benchmarks.reduction_order", "--quick", "--output",
                             str(tmp / "order.json")], env, tmp / "order.json", ()),
    }
    return BenchmarkRuns(commands)


@pytest.mark.slow
def test_one_and_two_processes_are_timed_with_the_all_reduce(runs):
    code, output, doc = runs.result("train_throughput")
    assert code == 0, output[-3000:]
    one, two = doc["results"]
    assert (one["processes"], two["processes"]) == (1, 2)
    for row in (one, two):
        assert row["status"] == "ok", row.get("error")
        assert row["images_per_second"] > 0 and row["backend"] == "jax"
    assert "allreduce" not in one
    # The timed all-reduces: the case's own gradients (width 0.125: every
    # trainable parameter of the three-head model) and the fixed sizes.
    import keras_googlenet

    model = keras_googlenet.GoogLeNet(stem="cifar", classes=10, width=0.125)
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    assert two["gradient_values"] == trainable
    sizes = [a["values"] for a in two["allreduce"]]
    assert sizes == sorted({trainable, 1 << 18, 1 << 22, 13_400_888})
    assert all(a["seconds"] > 0 and a["bytes"] == 4 * a["values"] for a in two["allreduce"])
    assert "2 processes" in two["label"] and "all-reduce of 53.6 MB" in output


@pytest.mark.slow
def test_the_scaling_model_reads_the_measurements(runs):
    code, output, doc = runs.result("scaling_model")
    assert code == 0, output[-3000:]
    parameters = doc["default_model_trainable_parameters"]
    rows = {r["layout"]: r for r in doc["rows"]}
    eight = rows["8 GPUs, 1 machine"]
    # A ring over 8 GPUs moves 2 x 7/8 of the float32 gradients over NVLink.
    assert eight["gradient_bytes"] == 4 * parameters
    assert eight["allreduce_ms"] == pytest.approx(
        1000 * (14 / 8 * 4 * parameters / 450e9 + 14 * 3e-6))
    slow, fast = rows["4 machines x 8 GPUs, 100 Gb/s network"], \
        rows["4 machines x 8 GPUs, 400 Gb/s network"]
    assert slow["allreduce_ms"] > fast["allreduce_ms"] > eight["allreduce_ms"]
    # b* = images/s x all-reduce time, for each assumed GPU speed.
    for rate, batch in slow["per_gpu_batch_above_which_network_is_not_the_limit"].items():
        assert batch == pytest.approx(int(rate) * slow["allreduce_ms"] / 1000)
    [measured] = doc["measured_on_this_machine"]
    assert measured["two_vs_one"] == pytest.approx(
        measured["images_per_second_two_processes"] / measured["images_per_second_one_process"])
    assert 0 < measured["gradient_allreduce_share_of_step"]
    assert "| 8 GPUs, 1 machine |" in output


def test_the_scaling_model_of_the_default_network():
    parameters = scaling_model.default_model_parameters()
    assert parameters == 13_385_816  # 13,400,888 weights less BatchNorm's moving statistics
    t = scaling_model.allreduce_seconds(2, 4 * parameters, "100 Gb/s network")
    # NVLink inside each machine, then 2 x 1/2 of the gradients over 12.5 GB/s.
    assert t == pytest.approx(14 / 8 * 4 * parameters / 450e9 + 14 * 3e-6
                              + 4 * parameters / 12.5e9 + 2 * 10e-6)


@pytest.mark.slow
def test_reduction_order_quick(runs):
    code, output, doc = runs.result("reduction_order")
    assert code == 0, output[-3000:]
    results = doc["results"]
    assert set(results) == {"batchnorm", "no_batchnorm"}
    for row in results.values():
        p = row["permutations"]
        assert len(p["loss_per_step"]) == 2 and len(p["loss_per_step"][0]) == 1
        # The first loss is a forward pass from the same weights: the order of
        # the batch moves it by float rounding only.
        assert p["loss_relative_spread_per_step"][0] < 1e-5
        assert 0 <= p["max_weight_difference"] < 1
        assert "processes" not in row  # --quick skips the training.cifar runs


def test_processes_need_the_jax_backend():
    from benchmarks import train_throughput
    from benchmarks.cases import normalize_case

    args = train_throughput.build_parser().parse_args(
        ["--backends", "tensorflow,jax", "--inputs", "cifar:32", "--jit", "on",
         "--processes", "1,2", "--batch-sizes", "8"])
    cases, skipped = train_throughput.grid(args)
    assert {(c["backend"], c["processes"]) for c in cases} == {
        ("tensorflow", 1), ("jax", 1), ("jax", 2)}
    assert [s["reason"] for s in skipped] == [
        "several processes (--strategy multi-worker) run on the JAX backend only"]
    with pytest.raises(ValueError, match="runs on the Keras JAX backend"):
        normalize_case(dict(backend="tensorflow", processes=2))


def test_a_process_group_asks_every_process_to_quit_before_waiting_for_any():
    """At exit JAX's distributed shutdown waits for every process, so process 0
    cannot end before process 1 is asked to quit too (waiting for it first cost
    the 30 s timeout and a kill per case)."""
    from benchmarks import workers

    calls = []

    class Member:
        def __init__(self, i):
            self.i = i

        def quit(self):
            calls.append(("quit", self.i))

        def close(self):
            calls.append(("close", self.i))

    group = workers._ProcessGroup.__new__(workers._ProcessGroup)
    group.members = [Member(0), Member(1)]
    group.close()
    assert calls == [("quit", 0), ("quit", 1), ("close", 0), ("close", 1)]
