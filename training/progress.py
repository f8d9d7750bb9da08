"""Progress of a training run: images/s, the whole run's ETA, one line that fits.

Keras's progress bar shows this epoch's ETA only, no speed until the epoch
ends, and lines wider than most terminals. `RunProgress` replaces it in
`python -m training.cifar`:

- on a terminal, one line rewritten in place, cut to the terminal's width:
  `epoch 3/100  45/390 [#.........]  78.1 img/s  ETA 6:02:11 (epoch 0:45)  loss 1.234`;
- otherwise (a log file, CI), one line per epoch, with the metrics;
- after the first timed steps (compilation excluded), one line with the
  estimated total time and, for a run over an hour with no GPU in use, the
  flags that make a CPU run practical.
"""

import shutil
import sys
import time

import keras

#: Timed steps before the total-time estimate is printed (the first step,
#: which compiles, is never timed).
ESTIMATE_AFTER_STEPS = 5

#: The advice (e.g. CPU flags) is printed only for runs estimated longer than this.
ADVICE_AFTER_S = 3600

#: Logged metrics shown in the live line and the per-epoch line, in order.
SHOWN = ("loss", "main_accuracy", "val_loss", "val_main_accuracy")


def format_duration(seconds):
    """`"1d 02:03:04"`, `"2:03:04"` or `"3:04"`."""
    seconds = max(0, int(round(seconds)))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}" if hours or days else f"{minutes}:{secs:02d}"
    return f"{days}d {text}" if days else text


def cpu_advice(config):
    """Flags that make a CPU-only run practical, as one sentence (empty if none apply)."""
    hints = []
    if config.model.width > 0.25:
        hints.append("--width 0.25 (about 16x fewer multiply-adds than 1.0)")
    if config.epochs > 10:
        hints.append("--epochs 10")
    if config.limit is None or config.limit > 10000:
        hints.append("--limit 5000")
    if not hints:
        return ""
    return "No GPU: for a practical CPU run try " + ", ".join(hints) + "."


class RunProgress(keras.callbacks.Callback):
    """Live progress and time estimates of a whole run (see the module docstring).

    Args:
        epochs: Total epochs of the run.
        steps_per_epoch: Training steps per epoch.
        batch_size: Images per step (the global batch).
        advice: Printed after the estimate (e.g. `cpu_advice(config)`), or "".
        live: One line updated in place; None: when the stream is a terminal.
        stream: Where to write (default `sys.stdout`).
        clock: Time source (for tests).
    """

    def __init__(self, epochs, steps_per_epoch, batch_size, *, advice="", live=None,
                 stream=None, clock=time.perf_counter):
        super().__init__()
        self.epochs, self.steps, self.batch_size = epochs, steps_per_epoch, batch_size
        self.advice, self.stream, self.clock = advice, stream or sys.stdout, clock
        self.live = self.stream.isatty() if live is None else live
        self._estimated = False
        self._epoch_overhead = 0.0  # validation and callbacks per epoch, measured
        self._step_time = None

    # ---- measurements ---------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._epoch_start = epoch, self.clock()
        self._timed_from = self._train_end = None

    def on_train_batch_end(self, batch, logs=None):
        now = self.clock()
        if batch == 0 or self._timed_from is None:  # the first step (compilation) is not timed
            self._timed_from, self._first_batch = now, batch
        else:
            timed = batch - self._first_batch
            self._step_time = (now - self._timed_from) / timed
            if not self._estimated and timed >= ESTIMATE_AFTER_STEPS:
                self._print_estimate(batch)
        if self.live:
            self._write_live(batch + 1, logs or {})

    def on_test_begin(self, logs=None):
        self._train_end = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        end = self.clock()
        if self._train_end is not None:
            self._epoch_overhead = end - self._train_end
        if self.live:
            self.stream.write("\r\033[K")
        took = end - self._epoch_start
        metrics = "  ".join(f"{k} {logs[k]:.4f}" for k in SHOWN if logs and k in logs)
        eta = self._run_eta(epoch + 1, 0)
        self._line(f"epoch {epoch + 1}/{self.epochs}  {format_duration(took)}  "
                   f"{self._speed()}  {metrics}" + (f"  run ETA {format_duration(eta)}"
                                                    if eta else ""))

    # ---- estimates ------------------------------------------------------------
    def images_per_second(self):
        """Training images per second over this epoch's timed steps (None before any)."""
        return self.batch_size / self._step_time if self._step_time else None

    def _run_eta(self, epochs_done, steps_done_in_epoch):
        if not self._step_time:
            return None
        steps_left = (self.epochs - epochs_done) * self.steps - steps_done_in_epoch
        epochs_left = self.epochs - epochs_done
        return max(0.0, steps_left * self._step_time + epochs_left * self._epoch_overhead)

    def _speed(self):
        ips = self.images_per_second()
        return f"{ips:.1f} img/s" if ips else "-- img/s"

    def _print_estimate(self, batch):
        self._estimated = True
        total = self.epochs * self.steps * self._step_time
        left = self._run_eta(self._epoch, batch + 1)
        if self.live:
            self.stream.write("\r\033[K")
        self._line(f"Estimated training time: {format_duration(total)} for {self.epochs} epochs "
                   f"at {self.images_per_second():.1f} images/s ({format_duration(left)} left)."
                   + (f" {self.advice}" if self.advice and total > ADVICE_AFTER_S else ""))

    # ---- output ---------------------------------------------------------------
    def _write_live(self, step, logs):
        width = shutil.get_terminal_size((100, 20)).columns - 1
        bar = "#" * int(10 * step / max(self.steps, 1))
        metrics = "  ".join(f"{k} {logs[k]:.3f}" for k in SHOWN if k in logs)
        epoch_eta = (self.steps - step) * self._step_time if self._step_time else None
        run_eta = self._run_eta(self._epoch, step)
        eta = (f"ETA {format_duration(run_eta)} (epoch {format_duration(epoch_eta)})"
               if epoch_eta is not None else "ETA --")
        text = (f"epoch {self._epoch + 1}/{self.epochs}  {step}/{self.steps} [{bar:<10}]  "
                f"{self._speed()}  {eta}  {metrics}")
        self.stream.write("\r\033[K" + text[:width])
        self.stream.flush()

    def _line(self, text):
        self.stream.write(text + "\n")
        self.stream.flush()
