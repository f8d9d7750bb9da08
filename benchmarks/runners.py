"""The worker process of the benchmarks: builds one case's model and times it.

    python -m benchmarks.runners --worker CASE_JSON     # started by benchmarks.workers

Protocol: the worker builds the case's model and warms it up, then writes one
JSON line (`ready`, `setup_s`, `macs_per_image`, `params`) to its stdout; for
every `run` line on its stdin it times one repeat of `steps` steps and answers
one JSON line (images/s, or TFLOP/s for the matmul reference); `quit` ends it.
Errors are answered as `{"error": ...}`. Everything the libraries print goes
to stderr (the worker's log).

Runners: `KerasRunner` (the training recipe's model, `model.fit`),
`TorchRunner` (the PyTorch reference, `benchmarks.torch_googlenet`, trained by
`benchmarks.torch_trainer`) and `MatmulRunner` (a practical peak of the
device). Each case's network is `cases.train_config(case).model_config(classes)`;
only the framework the case uses is imported.
"""

import json
import os
import sys
import time

from benchmarks.cases import normalize_case, train_config


def _peak_rss_mb():
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except (ImportError, OSError):  # pragma: no cover
        return None


def random_batch(case):
    """One fixed synthetic batch: uint8 NHWC images and int32 labels."""
    import numpy as np

    rng = np.random.default_rng(0)
    size = case["image_size"]
    images = rng.integers(0, 256, (case["batch_size"], size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, case["classes"], case["batch_size"]).astype("int32")
    return images, labels


class KerasRunner:
    """Builds the recipe's model (training.recipe) and times `model.fit`."""

    def __init__(self, case):
        backend = case["backend"]
        if case["devices"] > 1 and backend == "tensorflow":
            import tensorflow as tf

            cpus = tf.config.list_physical_devices("CPU")
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * case["devices"])
        import keras
        import numpy as np

        from keras_googlenet import count_flops
        from training.distributed import initialize
        from training.recipe import build_model, compile_model, count_trainable, setup_runtime

        if keras.backend.backend() != backend:
            raise RuntimeError(f"expected Keras backend {backend}, got {keras.backend.backend()}")
        config = train_config(case)
        initialize(config)  # processes > 1: joins the others (a no-op otherwise)
        config = config.resolve()
        scope, replicas = setup_runtime(config)
        if replicas != case["devices"] * case["processes"]:
            raise RuntimeError(f"asked for {case['devices']} devices x {case['processes']} "
                               f"processes, the strategy has {replicas}")
        with scope:
            self.model = build_model(config, case["classes"])
            if not case["fused_batchnorm"]:
                unfuse_batchnorm(self.model)
            compile_model(self.model, config, steps_per_epoch=100)
        self.macs = count_flops(self.model)
        self.params = self.model.count_params()
        images, labels = random_batch(case)
        # Each process feeds its share of the global batch (Keras joins them).
        share = case["batch_size"] // case["processes"]
        images, labels = (a[case["process_id"] * share:][:share] for a in (images, labels))
        onehot = np.eye(case["classes"], dtype="float32")[labels]
        targets = {head: onehot for head in self.model.output_names}
        if backend == "tensorflow":
            import tensorflow as tf

            dataset = tf.data.Dataset.from_tensors((images, targets)).repeat()
            self.data = lambda: dataset
        else:
            def generator():
                while True:
                    yield images, targets

            self.data = generator
        self.case = case
        self.fit(max(1, case["warmup_steps"]))
        self.extra_info = {}
        if case["processes"] > 1:
            trainable = count_trainable(self.model)
            self.extra_info["gradient_values"] = trainable
            self.extra_info["allreduce"] = [
                time_allreduce(n) for n in sorted({trainable, *ALLREDUCE_SIZES})]

    def fit(self, steps):
        """One timed repeat: `(seconds of steps 2..steps, wall seconds of the fit call)`."""
        import keras
        import numpy as np

        marks = {}

        class Timer(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if batch == 0:
                    float(np.asarray(logs["loss"]))  # wait for the first step
                    marks["start"] = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                float(np.asarray(logs["loss"]))
                marks["end"] = time.perf_counter()

        begin = time.perf_counter()
        self.model.fit(self.data(), epochs=1, steps_per_epoch=steps, verbose=0,
                       shuffle=False, callbacks=[Timer()])
        wall = time.perf_counter() - begin
        return marks["end"] - marks["start"], wall


#: float32 values per all-reduce timed besides the case's own gradient: 1 MiB,
#: 16 MiB, and the default GoogLeNet's 13,400,888 parameters (53.6 MB).
ALLREDUCE_SIZES = (1 << 18, 1 << 22, 13_400_888)


def time_allreduce(values, repeats=10):
    """Median seconds of one all-reduce (sum) of `values` float32 numbers over
    every process's devices, the collective that sums a data-parallel step's
    gradients: each device holds one row of a global array, and the sum over
    the rows is returned replicated. Every process must call it together.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = jax.make_mesh((jax.device_count(),), ("batch",))
    rows = np.ones((jax.local_device_count(), values), np.float32)
    x = jax.make_array_from_process_local_data(NamedSharding(mesh, P("batch")), rows,
                                               (jax.device_count(), values))
    total = jax.jit(lambda a: jnp.sum(a, axis=0), out_shardings=NamedSharding(mesh, P()))
    total(x).block_until_ready()  # compile
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        total(x).block_until_ready()
        times.append(time.perf_counter() - began)
    return {"values": values, "bytes": 4 * values, "seconds": float(np.median(times)),
            "seconds_min": float(min(times))}


def unfuse_batchnorm(model):
    """Before/after: turns the fused training kernel of every BatchNorm layer
    (`keras_googlenet.use_fused_kernel`) off (`fused=False`), which leaves Keras 3's
    own BatchNormalization, i.e. the project before the fused kernel. Called before
    `compile`, so the training step is traced without it."""
    import keras

    count = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and hasattr(layer, "fused"):
            layer.fused = False
            count += 1
    if not count:
        raise RuntimeError("the model has no BatchNorm layer with a fused kernel")


class TorchRunner:
    """The PyTorch reference (benchmarks.torch_googlenet), trained the same way."""

    def __init__(self, case):
        import torch

        from benchmarks.torch_googlenet import (build_torch_googlenet, count_macs,
                                                keras_style_param_count)
        from benchmarks.torch_trainer import TorchTrainer

        if case["torch_threads"]:
            torch.set_num_threads(case["torch_threads"])
        torch.manual_seed(0)
        model = build_torch_googlenet(train_config(case).model_config(case["classes"]))
        self.macs = count_macs(model)
        self.params = keras_style_param_count(model)
        self.trainer = TorchTrainer(model, steps=100 * 100,
                                    channels_last=case["channels_last"],
                                    autocast_bf16=case["precision"] == "mixed_bfloat16")
        self.x, self.y = self.trainer.prepare(*random_batch(case))
        self.threads = torch.get_num_threads()
        self.fit(max(1, case["warmup_steps"]))

    def fit(self, steps):
        """One timed repeat, as `KerasRunner.fit`."""
        begin = time.perf_counter()
        start = None
        for i in range(steps):
            loss = self.trainer.step(self.x, self.y)
            if i == 0:
                loss.item()
                start = time.perf_counter()
        loss.item()
        end = time.perf_counter()
        return end - start, end - begin


class MatmulRunner:
    """`keras.ops.matmul` of two n x n matrices: the machine's practical peak."""

    def __init__(self, case):
        n, dtype = case["matmul_size"], case["dtype"]
        self.flops = 2 * n ** 3
        import keras

        a = keras.random.normal((n, n), dtype=dtype, seed=0)
        # Reading one element back waits for the product (JAX dispatches asynchronously).
        self.run = lambda: float(keras.ops.convert_to_numpy(
            keras.ops.cast(keras.ops.matmul(a, a)[0, 0], "float32")))
        self.macs, self.params = 0, 0
        self.case = case
        for _ in range(2):
            self.run()

    def fit(self, steps):
        """`steps` products: `(seconds, seconds)`."""
        begin = time.perf_counter()
        for _ in range(steps):
            self.run()
        elapsed = time.perf_counter() - begin
        return elapsed, elapsed


RUNNERS = {"keras": KerasRunner, "torch": TorchRunner, "matmul": MatmulRunner}


def worker_main(case_json):
    """Runs the worker protocol (see the module docstring); returns the exit status."""
    # The protocol channel is the original stdout; everything else printed to
    # stdout by the libraries goes to stderr (the worker's log).
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message):
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    try:
        case = normalize_case(json.loads(case_json))
        began = time.perf_counter()
        runner = RUNNERS[case["framework"]](case)
        info = {"ready": True, "setup_s": time.perf_counter() - began,
                "macs_per_image": runner.macs, "params": runner.params}
        if case["framework"] == "torch":
            info["torch_threads_used"] = runner.threads
        info.update(getattr(runner, "extra_info", {}))
        send(info)
    except Exception as e:  # reported to the parent, which records the case as failed
        import traceback

        traceback.print_exc()
        send({"error": f"{type(e).__name__}: {e}"})
        return 1
    for command in sys.stdin:
        command = command.strip()
        if command == "quit":
            break
        try:
            timed, wall = runner.fit(case["steps"])
            if case["framework"] == "matmul":
                send({"tflops": runner.flops * case["steps"] / timed / 1e12})
            else:
                send({"images_per_second": (case["steps"] - 1) * case["batch_size"] / timed,
                      "fit_images_per_second": case["steps"] * case["batch_size"] / wall,
                      "peak_rss_mb": _peak_rss_mb()})
        except Exception as e:
            import traceback

            traceback.print_exc()
            send({"error": f"{type(e).__name__}: {e}"})
            return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(worker_main(sys.argv[2]))
    print("benchmarks.runners is the benchmarks' worker process; run "
          "benchmarks.train_throughput or benchmarks.torch_reference", file=sys.stderr)
    sys.exit(2)
