"""Quiet framework logging: the project's own lines first, TensorFlow's noise hidden.

Importing TensorFlow on a CPU-only machine prints about a dozen lines from its
C++ runtime before any program output (absl's "All log messages before
absl::InitializeLog()" notice, "Could not find cuda drivers", a frightening
`failed call to cuInit: ... (303)` *error* that only means "no GPU here",
oneDNN and CPU-instruction notices), and the TFLite converter adds more. They
are written by C++ straight to file descriptor 2, so neither Python's `logging`
nor `TF_CPP_MIN_LOG_LEVEL` removes them all.

`quiet_native_stderr()` captures file descriptor 2 around the noisy calls and
writes back every line that is not known noise: warnings and errors from
anywhere (and everything, when `verbose=True`) still reach the user, after the
call. `import_backend()` imports Keras and its backend that way; the CLIs call
it first, with their `-v/--framework-logs` flag.
"""

import contextlib
import logging
import os
import re
import sys
import tempfile

_RECORD = r"[{levels}]\d{{4}} [\d:.]+\s+\d+ [\w./-]+:\d+\] "

#: Lines dropped from captured native output (unless verbose). Each is either
#: informational or, for cuInit, the expected outcome on a machine without GPU.
NOISE_PATTERNS = (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    # C++ INFO and WARNING records (absl format: I0000 00:00:1795459527.193710  2909 file.cc:31] ...).
    _RECORD.format(levels="IW") + r".*",
    r"To enable the following instructions: .*, in other operations, rebuild TensorFlow "
    r"with the appropriate compiler flags\.",
    r"This TensorFlow binary is optimized to use available CPU instructions .*",
    r"oneDNN custom operations are on\. .*",
)
#: No GPU driver: the CUDA platform reports it as an error, but on a machine
#: without an NVIDIA device it only means "CPU only"; shown where a device exists.
CUINIT_PATTERN = _RECORD.format(levels="E") + r"failed call to cuInit.*"

_NOISE = re.compile("|".join(f"(?:{p})" for p in NOISE_PATTERNS))
_CUINIT = re.compile(CUINIT_PATTERN)


#: Whether noise is shown, for calls that do not say (set by `import_backend`).
_verbose = False


def is_noise(line):
    """Whether a captured line is known framework noise."""
    line = line.rstrip("\r\n")
    if _CUINIT.fullmatch(line):
        return not os.path.exists("/dev/nvidiactl")
    return bool(_NOISE.fullmatch(line))


def quiet_python_logging(verbose=False):
    """Lowers TensorFlow's and absl's Python loggers to errors (all levels when verbose).

    Also sets `TF_CPP_MIN_LOG_LEVEL=1` (hides C++ INFO records that are emitted
    after start-up) unless the user set it or `verbose`.
    """
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    level = logging.DEBUG if verbose else logging.ERROR
    for name in ("tensorflow", "absl", "tensorflow_datasets", "h5py"):
        logging.getLogger(name).setLevel(level)
    if "absl.logging" in sys.modules or not verbose:
        try:
            from absl import logging as absl_logging
        except ImportError:  # absl comes with TensorFlow; nothing to quiet without it
            return
        absl_logging.set_verbosity(absl_logging.DEBUG if verbose else absl_logging.ERROR)


#: On a failure, a native log of at most this many lines is written back whole;
#: a longer one (a converter's op dump) is replaced by one line saying so.
FAILURE_LINES_SHOWN = 5


@contextlib.contextmanager
def quiet_native_stderr(verbose=None):
    """Captures file descriptor 2 for the block; writes back all but known noise.

    On an exception every captured line is written back when there are at most
    `FAILURE_LINES_SHOWN`, else one line says how many were hidden (the
    exception says what failed). With `verbose=True` this does nothing;
    `None` follows the last `import_backend(verbose=...)` (quiet by default).
    """
    if verbose is None:
        verbose = _verbose
    if verbose:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (e.g. some IDEs)
        yield
        return
    failed = False
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True)
                    if failed or not is_noise(line)]
            if failed and len(kept) > FAILURE_LINES_SHOWN:
                # A converter's op dump runs to hundreds of lines; the exception
                # already says what failed, in one line.
                kept = [f"({len(kept)} lines of native log hidden; -v / --framework-logs "
                        "shows them)\n"]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_backend(verbose=False):
    """Imports Keras and its backend quietly (see the module docstring); returns `keras`.

    On TensorFlow the devices are listed too, inside the capture, since that is
    when the CUDA runtime reports a missing driver.
    """
    global _verbose
    _verbose = verbose
    quiet_python_logging(verbose)
    with quiet_native_stderr(verbose):
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()
            quiet_python_logging(verbose)  # TensorFlow's import resets its logger's level
    return keras
