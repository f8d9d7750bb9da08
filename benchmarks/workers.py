"""Interleaved measurements of cases, each in its own worker process (parent side).

Used by `benchmarks.train_throughput` and `benchmarks.torch_reference`. Every
*case* (one setting to measure, see `benchmarks.cases`) runs in its own Python
process (`python -m benchmarks.runners --worker CASE`), so that settings read
once at start-up (the Keras backend, `TF_ENABLE_ONEDNN_OPTS`, thread pools, the
number of logical devices, PyTorch vs TensorFlow) can differ between cases.
The workers are started one after the other, each building its model and
warming up (compilation and tracing are never timed) while the ones before it
wait idle; then the parent asks them in turn for one timed repeat each,
going forwards then backwards through the cases (A B C, C B A, ...), so while one
worker is timed the others sit idle and a change in machine load during the run
affects every case alike. A case's figure is the median of its repeats.

A timed repeat is one `model.fit(epochs=1, steps_per_epoch=steps)` call (for
PyTorch: `steps` optimizer steps) on one fixed synthetic batch; its clock starts
after the first step has finished (the first step of a `fit` call also pays for
creating the data iterator) and stops when the last step's loss is available, so
a repeat times `steps - 1` steps (see `benchmarks.runners`).

This module imports no framework: a worker only loads the framework its case uses.
It also gives the command of a process that trains several `training.cifar`
runs one after the other (`TRAINING_RUNS`: the reduction-order benchmark's and
the tests' multi-run processes).
"""

import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading

from benchmarks.cases import TRAIN_FLOPS_PER_MAC, normalize_case
from keras_googlenet._internal.environment import RECORDED_ENV

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The module a worker process runs.
WORKER_MODULE = "benchmarks.runners"

#: A process that trains one `python -m training.cifar` run per command line
#: (`sys.argv[1]`: a JSON list of argument lists), in order, and exits with the
#: first failure's status. The runs share the process's start-up (imports; a
#: multi-worker process joins its cluster once, at its first run). Its last line
#: says whether TensorFlow was imported (a run on JAX need not import it).
TRAINING_RUNS = """
import json, sys
from training.cifar import main
status = 0
for args in json.loads(sys.argv[1]):
    status = main(args)
    if status:
        break
print("tensorflow imported:", "tensorflow" in sys.modules)
sys.exit(status)
"""


def training_runs_command(runs):
    """The command line of a `TRAINING_RUNS` process that trains `runs` (lists of
    `training.cifar` flags)."""
    return [sys.executable, "-c", TRAINING_RUNS, json.dumps(runs)]


class _Worker:
    """A worker process and a thread reading its protocol lines."""

    def __init__(self, case):
        self.case = case
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_REPO_ROOT, env.get("PYTHONPATH")) if p)
        if case["backend"] and case["framework"] != "torch":
            env["KERAS_BACKEND"] = case["backend"]
        if case["devices"] > 1 and case["backend"] == "jax":
            flag = f"--xla_force_host_platform_device_count={case['devices']}"
            env["XLA_FLAGS"] = " ".join(p for p in (env.get("XLA_FLAGS"), flag) if p)
        env.update(case["env"])
        self.env = {k: env[k] for k in RECORDED_ENV if k in env}
        self.log = tempfile.TemporaryFile(mode="w+", prefix="bench-worker-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, "--worker", json.dumps(case)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            env=env, cwd=_REPO_ROOT, text=True, bufsize=1,
        )
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def receive(self, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"no answer within {timeout:.0f} s") from None
        if line is None:
            self.proc.wait()
            raise RuntimeError(f"worker exited with status {self.proc.returncode}")
        message = json.loads(line)
        if "error" in message:
            raise RuntimeError(message["error"])
        return message

    def send(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def stderr_tail(self, chars=2000):
        self.log.seek(0)
        return self.log.read()[-chars:]

    def quit(self):
        """Asks the worker to end (once), without waiting for it."""
        if self.proc.poll() is None and not self.proc.stdin.closed:
            try:
                self.send("quit")
                self.proc.stdin.close()
            except (OSError, ValueError):
                pass

    def close(self):
        self.quit()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def free_port():
    """A TCP port of 127.0.0.1 that nothing listens on (for a coordinator)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _ProcessGroup:
    """The worker processes of one case run over several processes (`processes` > 1,
    `--strategy multi-worker` on 127.0.0.1), driven like one `_Worker`: each
    command goes to every process (they step together) and process 0's answer
    is the case's (its images/s are those of the global batch)."""

    def __init__(self, case):
        address = f"127.0.0.1:{free_port()}"
        self.case = case
        self.members = [_Worker({**case, "process_id": i, "job_addresses": address})
                        for i in range(case["processes"])]
        self.env = self.members[0].env

    def receive(self, timeout):
        return [member.receive(timeout) for member in self.members][0]

    def send(self, command):
        for member in self.members:
            member.send(command)

    def stderr_tail(self, chars=2000):
        share = chars // len(self.members)
        return "\n".join(f"[process {i}] {m.stderr_tail(share)}"
                         for i, m in enumerate(self.members))

    def close(self):
        # Every process is asked to quit before any is waited for: at exit JAX's
        # distributed shutdown waits for all the processes, so waiting for
        # process 0 first cost the 30 s timeout (and a kill) per case.
        for member in self.members:
            member.quit()
        for member in self.members:
            member.close()


def run_interleaved(cases, *, repeats=5, peak_tflops=None, max_alive=None,
                    setup_timeout=900, repeat_timeout=900, log=None):
    """Measures every case in its own worker process, interleaved.

    Args:
        cases: Case dicts (see `benchmarks.cases.CASE_DEFAULTS`).
        repeats: Timed repeats per case; the reported figure is their median.
        peak_tflops: Device peak in TFLOP/s, for the `utilisation` field.
        max_alive: At most this many workers at once (memory); cases are then
            measured in consecutive groups, interleaved within each group.
        setup_timeout, repeat_timeout: Seconds to wait for a worker to get
            ready / to finish a repeat before giving up on its case.
        log: Progress callback (default: print to stderr).

    Returns:
        One result dict per case, in order: the case's fields plus the figures
        (`status` is `"ok"`, else `"error"` with the reason in `error`).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    cases = [normalize_case(c) for c in cases]
    group = max_alive or len(cases) or 1
    results = []
    for number, start in enumerate(range(0, len(cases), group)):
        rows = _run_group(cases[start:start + group], repeats, peak_tflops,
                          setup_timeout, repeat_timeout, log)
        for row in rows:
            row["group"] = number
        for row in rows:  # relative to the first case measured in the same passes
            row["vs_first"] = paired_ratio(row, rows[0])
        results += rows
    return results


def _run_group(cases, repeats, peak_tflops, setup_timeout, repeat_timeout, log):
    workers = []
    infos, samples, errors = {}, {i: [] for i in range(len(cases))}, {}
    try:
        # One worker set up at a time: concurrent start-ups only fight over the
        # cores (and PyTorch's spinning OpenMP threads make that much worse).
        for i, case in enumerate(cases):
            w = _ProcessGroup(case) if case["processes"] > 1 else _Worker(case)
            workers.append(w)
            try:
                infos[i] = w.receive(setup_timeout)
                log(f"  ready: {w.case['label']} ({infos[i]['setup_s']:.1f} s to build and warm up)")
            except (RuntimeError, ValueError) as e:
                errors[i] = f"{e}; worker stderr: {w.stderr_tail()}"
                log(f"  FAILED: {w.case['label']}: {e}")
        for r in range(repeats):
            order = range(len(cases)) if r % 2 == 0 else reversed(range(len(cases)))
            for i in order:
                if i in errors:
                    continue
                try:
                    workers[i].send("run")
                    samples[i].append(workers[i].receive(repeat_timeout))
                except (RuntimeError, ValueError, OSError) as e:
                    errors[i] = f"{e}; worker stderr: {workers[i].stderr_tail()}"
                    log(f"  FAILED: {cases[i]['label']}: {e}")
            log(f"  repeat {r + 1}/{repeats} done")
    finally:
        for w in workers:
            w.close()
    return [_result(cases[i], workers[i].env, infos.get(i), samples[i], errors.get(i),
                    peak_tflops) for i in range(len(cases))]


def paired_ratio(a, b):
    """Median over repeats of a's images/s divided by b's in the same repeat.

    Repeat r of every case in a group is measured within one pass over the
    cases, so the ratio of the two compares them under (nearly) the same machine
    load; its median is steadier than the ratio of the medians on a busy machine.
    None if either case failed or they were not measured in the same group.
    """
    key = "tflops_repeats" if a.get("framework") == "matmul" else "images_per_second_repeats"
    ra, rb = a.get(key), b.get(key)
    if a.get("status") != "ok" or b.get("status") != "ok" or not ra or not rb \
            or a.get("group") != b.get("group"):
        return None
    return statistics.median(x / y for x, y in zip(ra, rb))


def _result(case, env, info, samples, error, peak_tflops):
    row = {k: v for k, v in case.items()}
    row["worker_env"] = env
    if error is not None or not samples:
        row.update(status="error", error=(error or "no samples")[-3000:])
        return row
    row.update(status="ok", repeats=len(samples), **{k: v for k, v in info.items() if k != "ready"})
    if case["framework"] == "matmul":
        row.update(achieved_tflops=statistics.median(s["tflops"] for s in samples),
                   tflops_repeats=[s["tflops"] for s in samples])
        row["utilisation"] = row["achieved_tflops"] / peak_tflops if peak_tflops else None
        return row
    ips = [s["images_per_second"] for s in samples]
    median = statistics.median(ips)
    row.update(
        images_per_second=median,
        images_per_second_repeats=ips,
        spread=(max(ips) - min(ips)) / median,
        step_time_s=case["batch_size"] / median,
        fit_images_per_second=statistics.median(s["fit_images_per_second"] for s in samples),
        peak_rss_mb=max((s.get("peak_rss_mb") or 0) for s in samples) or None,
        train_flops_per_image=TRAIN_FLOPS_PER_MAC * info["macs_per_image"],
    )
    row["achieved_tflops"] = median * row["train_flops_per_image"] / 1e12
    row["utilisation"] = row["achieved_tflops"] / peak_tflops if peak_tflops else None
    return row
