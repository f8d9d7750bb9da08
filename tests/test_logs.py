"""Quiet framework logging (keras_googlenet._internal.logs): noise hidden, real messages kept."""

import os
import subprocess
import sys

import pytest

from keras_googlenet._internal import logs

NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795459527.193710    2909 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "I0000 00:00:1795459527.254319    2909 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with "
    "the appropriate compiler flags.",
    "W0000 00:00:1795461302.5 17638 tf_tfl_flatbuffer_helpers.cc:365] Ignored output_format.",
]
KEPT = [
    "E0000 00:00:1795459532.1 2909 saved_model.cc:12] could not write the variables",
    "error: --width must be > 0; got -1",
    "UserWarning: something the user should read",
]


@pytest.mark.parametrize("line", NOISE)
def test_known_noise_is_recognised(line):
    assert logs.is_noise(line + "\n")


@pytest.mark.parametrize("line", KEPT)
def test_errors_and_warnings_are_kept(line):
    assert not logs.is_noise(line)


def test_cuinit_is_noise_only_without_an_nvidia_device():
    line = ("E0000 00:00:1795459532.130495    2909 cuda_platform.cc:52] failed call to cuInit: "
            "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")
    assert logs.is_noise(line) == (not os.path.exists("/dev/nvidiactl"))


_CHILD = """
import os, sys
from keras_googlenet._internal import logs
try:
    with logs.quiet_native_stderr(verbose={verbose}):
        os.write(2, b"{noise}\\n")
        os.write(2, b"{kept}\\n")
        print("python warning", file=sys.stderr)
        if {fail}:
            raise SystemExit(3)
finally:
    print("after", file=sys.stderr)
"""


@pytest.mark.parametrize("verbose, fail", [(False, False), (True, False), (False, True)])
def test_native_stderr_is_filtered_and_written_back(verbose, fail):
    code = _CHILD.format(verbose=verbose, fail=fail, noise=NOISE[1], kept=KEPT[0])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = out.stderr.splitlines()
    assert out.returncode == (3 if fail else 0)
    assert lines[-1] == "after" and KEPT[0] in lines and "python warning" in lines
    # The noise is dropped, unless verbose or the block failed (then everything is shown).
    assert (NOISE[1] in lines) == (verbose or fail)


@pytest.mark.parametrize("verbose", [False, True])
def test_a_long_native_log_of_a_failure_is_one_line_unless_verbose(verbose):
    """A converter's op dump (hundreds of lines) does not reach the user, -v shows it."""
    dump = "".join(f"tf.Relu(tensor<1x8x8x96xbf16>) {i}\\n" for i in range(200))
    code = _CHILD.format(verbose=verbose, fail=True, noise=NOISE[1], kept=dump)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = out.stderr.splitlines()
    assert out.returncode == 3 and lines[-1] == "after"
    dumped = [line for line in lines if "xbf16" in line]
    if verbose:
        assert len(dumped) == 200
    else:
        assert dumped == [] and len(lines) == 2, lines
        assert lines[0].startswith(f"({200 + 3} lines of native log hidden; -v")


@pytest.mark.slow
def test_importing_the_backend_prints_no_framework_noise():
    code = ("from keras_googlenet._internal import logs; keras = logs.import_backend(); "
            "import keras_googlenet as kg; kg.GoogLeNet(stem='cifar', classes=2, width=0.125); "
            "print('ok')")
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stdout.strip() == "ok"
    assert [line for line in quiet.stderr.splitlines() if line.strip()] == [], quiet.stderr
    loud = subprocess.run([sys.executable, "-c", code.replace("import_backend()",
                                                              "import_backend(verbose=True)")],
                          capture_output=True, text=True)
    assert loud.returncode == 0
    if "tensorflow" in os.environ.get("KERAS_BACKEND", "tensorflow"):
        assert "absl::InitializeLog" in loud.stderr  # what verbose shows, on TensorFlow
