"""The one configuration object of a training run.

`TrainConfig` holds every setting of `python -m training.cifar` (each CLI flag is
one field). Some fields default to `None`, meaning "pick for this machine";
`TrainConfig.resolve()` fills them in, and the resolved configuration is what a
run writes to `runs/<name>/config.json` and reads back with `TrainConfig.load`.
"""

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Optional

from keras_googlenet.architecture import (
    AUX_HEADS,
    BLOCK_FIELDS,
    BLOCK_NAMES,
    LOSS_WEIGHTS,
    MIN_INPUT_SIZE,
    is_block_table,
)
from keras_googlenet.architecture import STEMS as MODEL_STEMS
from keras_googlenet.architecture import ARCHITECTURE_OPTIONS
from keras_googlenet.pretrained import weights_entry
from keras_googlenet.config import MAX_WIDTH, GoogLeNetConfig
from keras_googlenet._internal.environment import (
    accelerator, auto_precision, cpu, tensorflow_available,
)
from keras_googlenet._internal.fileio import atomic_write_json, parse_json
from keras_googlenet._internal.values import is_int
from training.checks import (
    at_least,
    fraction,
    is_address,
    is_num,
    weights_checks,
    within,
)

#: Values accepted by the choice fields.
DATA_SOURCES = ("tfds", "folder", "synthetic")
STEMS = tuple(sorted(MODEL_STEMS))
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("none", "mirrored", "data-parallel", "multi-worker")
PIPELINES = ("tf.data", "numpy")
LR_SCALINGS = ("linear", "none")

#: The batch size `--lr` is given for under `--lr-scaling linear`: the peak
#: learning rate is then `lr * batch_size / LR_REFERENCE_BATCH` (Goyal et al.
#: 2017, "Accurate, Large Minibatch SGD"); see `TrainConfig.peak_lr`. The default
#: stays `none` (`--lr` as given): at batch 256 the CPU time-to-accuracy measurement
#: (benchmarks/results/time_to_accuracy_cpu_w025.json) could not tell the two
#: rules apart within seed noise.
LR_REFERENCE_BATCH = 128

#: The values of fields added after runs were saved without them: a config.json
#: that lacks one was trained that way (`TrainConfig.from_dict` fills them in,
#: so that such a run resumes with the settings it was started with).
LEGACY_VALUES = {"cutout": 0, "tta_flip": False, "lr_scaling": "none", "freeze_epochs": 0,
                 "finetune_lr_factor": None}

#: Fields that may change between a killed run and its resumption: they do not
#: change the trained state (everything else must match to resume).
RESUME_INDEPENDENT = ("overwrite", "verbose", "framework_logs", "export", "jit", "pipeline", "cache_dir",
                      "max_extract_mb", "max_extract_ratio",
                      "steps_per_execution", "run_eagerly",
                      # Only a note on why `precision` (which must match) was picked.
                      "precision_reason",
                      # Where each process of a multi-worker run finds the others, and
                      # which one it is: a resumed run may start on other machines.
                      "job_addresses", "process_id", "init_timeout")

#: Keras's environment variables of `keras.distribution.initialize`, by field:
#: `--strategy multi-worker` reads them when the flags are not given.
PROCESS_ENV = {
    "job_addresses": "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "num_processes": "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "process_id": "KERAS_DISTRIBUTION_PROCESS_ID",
}

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

#: Upper bounds of the sizes, checked before anything is allocated. Each says why.
MAX_NAME_LENGTH = 200  # file names stop at 255 bytes; temporary names add to NAME
MAX_IMAGE_SIZE = 4096  # one 4096x4096 image's activations already need tens of GiB
MAX_BATCH_SIZE = 2**16  # no accelerator holds 65,536 GoogLeNet activations at once
MAX_EPOCHS = 10**6
MAX_SEED = 2**32 - 1  # numpy's seeds (keras.utils.set_random_seed) stop there
MAX_STEPS_PER_EXECUTION = 10**6
MAX_SYNTHETIC_GIB = 16  # --data synthetic generates its uint8 images in memory
MAX_PROCESSES = 4096  # far beyond any data-parallel GoogLeNet job
MAX_INIT_TIMEOUT = 3600  # an hour: a cluster that needs longer to start is broken

#: --finetune-lr-factor's default: the unfrozen phase peaks at a tenth of --lr.
DEFAULT_FINETUNE_LR_FACTOR = 0.1


class ConfigError(ValueError):
    """An invalid setting; the message is one line meant for the user."""


@dataclass
class TrainConfig:
    """Every setting of a training run. See `python -m training.cifar --help`.

    Fields left at `None` are machine-dependent and filled by `resolve()`.
    """

    # ---- run ----------------------------------------------------------------
    name: str = "googlenet-cifar10"
    runs_dir: str = "runs"
    export_dir: str = "saved_models"
    export: bool = True
    overwrite: bool = False
    verbose: int = 1
    framework_logs: bool = False
    # ---- data ---------------------------------------------------------------
    data: Optional[str] = None  # None: "folder" if data_dir is set, else "tfds"
    data_dir: Optional[str] = None
    tfds_name: str = "cifar10"
    tfds_dir: Optional[str] = None
    cache_dir: Optional[str] = None
    max_extract_mb: int = 4096  # training.data.archives.DEFAULT_MAX_EXTRACT_MB
    max_extract_ratio: float = 200.0  # training.data.archives.DEFAULT_MAX_EXTRACT_RATIO
    image_size: int = 32
    limit: Optional[int] = None
    val_fraction: float = 0.1
    skip_bad_images: bool = False
    synthetic_examples: int = 10000
    pipeline: Optional[str] = None  # None: "tf.data" when TensorFlow imports, else "numpy"
    # ---- model --------------------------------------------------------------
    stem: str = "cifar"
    width: float = 1.0
    batch_norm: bool = True
    dropout: float = 0.4
    aux_dropout: float = 0.7
    aux_weight: float = LOSS_WEIGHTS[next(iter(AUX_HEADS))]  # the paper's 0.3
    # The nine Inception blocks' channel tuples (keras_googlenet.BLOCK_FIELDS order);
    # None is the paper's Table 1. Set by `tuner.search --train-best`; JSON lists.
    blocks: Optional[list] = None
    # Start from pretrained weights: "imagenet", "cifar10" or a torchvision GoogLeNet
    # .pth (keras_googlenet.load_backbone_weights; the heads are new, for the data's classes).
    weights: Optional[str] = None
    # ---- recipe -------------------------------------------------------------
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.1  # the peak lr; for a batch of LR_REFERENCE_BATCH under lr_scaling="linear"
    lr_scaling: str = "none"
    momentum: float = 0.9
    nesterov: bool = True
    # Keras applies weight decay directly to the weights (decoupled, not through
    # the momentum buffer), so 5e-3 here matches the usual coupled 5e-4 of
    # PyTorch CIFAR recipes with momentum 0.9 (5e-4 / (1 - 0.9)).
    weight_decay: float = 5e-3
    warmup_epochs: Optional[float] = None  # None: 5% of the first phase's epochs, at most 5
    # Fine-tuning --weights in two phases (training.recipe.run_phases): the first
    # freeze_epochs train only the new heads (backbone frozen, its BatchNorm in
    # inference mode); the rest also train the backbone, at a peak learning rate of
    # lr * finetune_lr_factor. 0: one phase, every layer trains from the start.
    freeze_epochs: int = 0
    finetune_lr_factor: Optional[float] = None  # None: 0.1 with freeze_epochs, else unused
    label_smoothing: float = 0.1
    augment: bool = True
    pad: int = 4
    cutout: int = 0  # side of the zeroed square (DeVries & Taylor 2017); 0: off
    tta_flip: bool = False
    ema: bool = False
    ema_momentum: float = 0.999
    seed: int = 0
    # ---- system -------------------------------------------------------------
    jit: Optional[bool] = None  # None: on with a GPU (or on JAX), off on CPU
    precision: Optional[str] = None  # None: environment.auto_precision (see resolve)
    precision_reason: Optional[str] = None  # set by resolve: why auto picked `precision`
    strategy: str = "none"
    steps_per_execution: int = 1
    run_eagerly: bool = False
    # ---- distributed (--strategy multi-worker) --------------------------------
    # None: from Keras's KERAS_DISTRIBUTION_* variables (PROCESS_ENV).
    job_addresses: Optional[str] = None  # "host:port" of process 0, or all processes'
    num_processes: Optional[int] = None
    process_id: Optional[int] = None
    init_timeout: int = 120  # seconds to find the other processes, then a one-line error

    # ------------------------------------------------------------------------
    @property
    def run_dir(self):
        """The run folder, `runs_dir/name`."""
        return os.path.join(self.runs_dir, self.name)

    @property
    def export_path(self):
        """The SavedModel folder, `export_dir/name`."""
        return os.path.join(self.export_dir, self.name)

    @property
    def precision_text(self):
        """`precision` with the reason auto picked it, as the run's first line prints it:
        `"mixed_bfloat16 (auto: CPU has amx_bf16)"`, or just `"float32"` when given."""
        return self.precision + (f" ({self.precision_reason})" if self.precision_reason else "")

    @property
    def peak_lr(self):
        """The learning rate after warm-up: `lr`, times `batch_size / LR_REFERENCE_BATCH`
        with `lr_scaling="linear"`."""
        if self.lr_scaling == "linear":
            return self.lr * self.batch_size / LR_REFERENCE_BATCH
        return self.lr

    def resolve(self):
        """Returns a validated copy with every automatic value filled in.

        - `data`: `"folder"` when `data_dir` is set, else `"tfds"`.
        - `warmup_epochs`: 5% of `epochs` (of `freeze_epochs` when there is a
          frozen phase), at most 5.
        - `finetune_lr_factor`: 0.1 when `freeze_epochs` > 0.
        - `data_dir`: made absolute, so the saved configuration is self-contained.
        - `jit`: on when a GPU is visible to the Keras backend, or on JAX (whose
          non-jitted execution is op-by-op); off on CPU with TensorFlow, where
          XLA is slower.
        - `precision`: `keras_googlenet._internal.environment.auto_precision`:
          `mixed_bfloat16` on GPUs that support it (compute capability 8.0+),
          `mixed_float16` on older GPUs; on CPU with TensorFlow, `mixed_bfloat16`
          where the CPU has bf16 units (`amx_bf16` or `avx512_bf16`), else
          `float32`.
        - `pipeline`: `tf.data` when TensorFlow is importable, else `numpy`.

        Raises:
            ConfigError: If a value is invalid or inconsistent.
        """
        config = dataclasses.replace(self)
        if isinstance(config.blocks, (list, tuple)):  # JSON-equal form, for resume checks
            config.blocks = [list(row) if isinstance(row, (list, tuple)) else row
                             for row in config.blocks]
        if config.data is None:
            config.data = "folder" if config.data_dir else "tfds"
        if config.warmup_epochs is None:  # warm-up is part of the first phase
            first = config.freeze_epochs if at_least(config.freeze_epochs, 1) else config.epochs
            config.warmup_epochs = round(min(5.0, 0.05 * first), 6)
        if config.finetune_lr_factor is None and at_least(config.freeze_epochs, 1):
            config.finetune_lr_factor = DEFAULT_FINETUNE_LR_FACTOR
        if config.data_dir is not None:
            config.data_dir = os.path.abspath(os.path.expanduser(config.data_dir))
        config = config.resolve_processes()
        config.validate()
        if config.jit is None or config.precision is None:
            backend, gpu = accelerator()
            if config.jit is None:
                config.jit = gpu is not None or backend == "jax"
            if config.precision is None:
                config.precision, reason = auto_precision(backend, gpu, cpu()[1])
                config.precision_reason = f"auto: {reason}"
        if config.pipeline is None:
            config.pipeline = "tf.data" if tensorflow_available() else "numpy"
        config.validate()
        return config

    def resolve_processes(self):
        """Returns a copy whose multi-worker fields are filled in and checked.

        With `--strategy multi-worker`, fields left at `None` come from Keras's
        environment variables (`PROCESS_ENV`); other strategies take no
        multi-worker settings (the variables are then ignored). Pure: nothing
        is started (`training.distributed.initialize` starts the processes).

        Raises:
            ConfigError: If a multi-worker setting is missing or invalid.
        """
        config = dataclasses.replace(self)
        given = [f for f in PROCESS_ENV if getattr(config, f) is not None]
        if config.strategy != "multi-worker":
            if given:
                raise ConfigError(f"--{given[0].replace('_', '-')} needs --strategy multi-worker; "
                                  f"got --strategy {config.strategy}")
            return config
        for field, variable in PROCESS_ENV.items():
            if getattr(config, field) is None and os.environ.get(variable, "") != "":
                value = os.environ[variable]
                if field != "job_addresses":
                    try:
                        value = int(value)
                    except ValueError:
                        raise ConfigError(f"{variable} must be an integer; got {value!r}") from None
                setattr(config, field, value)
        for field, variable in PROCESS_ENV.items():
            if getattr(config, field) is None:
                raise ConfigError(f"--strategy multi-worker needs --{field.replace('_', '-')} "
                                  f"(or ${variable}), the same on every process but the id")
        for flag, value, valid, requirement in _process_checks(config):
            if not valid:
                raise ConfigError(f"{flag} must be {requirement}; got {value!r}")
        return config

    def validate(self):
        """Checks every field; raises `ConfigError` naming the first bad one."""
        if not (isinstance(self.name, str) and _NAME_RE.fullmatch(self.name)):
            raise ConfigError("--name must be a plain folder name (letters, digits, '.', '_', "
                              f"'-', starting with a letter or digit); got {self.name!r}")
        if len(self.name) > MAX_NAME_LENGTH:
            raise ConfigError(f"--name must be at most {MAX_NAME_LENGTH} characters (file names "
                              f"stop at 255); got {len(self.name)} characters")
        if self.data == "folder" and not self.data_dir:
            raise ConfigError("--data folder needs --data-dir DIR (a folder or a .tar/.tar.xz/"
                              ".zip archive)")
        if self.data in ("tfds", "synthetic") and self.data_dir:
            raise ConfigError(
                f"--data-dir is only used with --data folder (got --data {self.data})"
            )
        minimum = MIN_INPUT_SIZE.get(self.stem, 1)
        max_warmup = self.epochs if is_int(self.epochs) else 0
        if at_least(self.freeze_epochs, 1):
            max_warmup = self.freeze_epochs  # warm-up is in the frozen phase
        size = self.image_size if within(self.image_size, 1, MAX_IMAGE_SIZE) else 1
        max_synthetic = max(1, MAX_SYNTHETIC_GIB * 2**30 // (size * size * 3 * 11 // 10))
        checks = [  # (flag, value, valid, what a valid value is)
            ("--data", self.data, self.data in (None, *DATA_SOURCES), f"one of {DATA_SOURCES}"),
            ("--stem", self.stem, self.stem in STEMS, f"one of {STEMS}"),
            ("--image-size", self.image_size, within(self.image_size, minimum, MAX_IMAGE_SIZE),
             f"an integer >= {minimum} for --stem {self.stem} and <= {MAX_IMAGE_SIZE} (larger "
             "images do not fit in memory)"),
            ("--limit", self.limit, self.limit is None or at_least(self.limit, 1), ">= 1"),
            ("--val-fraction", self.val_fraction, fraction(self.val_fraction), "in [0, 1)"),
            ("--max-extract-mb", self.max_extract_mb, at_least(self.max_extract_mb, 1), ">= 1"),
            ("--max-extract-ratio", self.max_extract_ratio, is_num(self.max_extract_ratio)
             and 1 <= self.max_extract_ratio < float("inf"), "a number >= 1"),
            ("--synthetic-examples", self.synthetic_examples,
             self.data != "synthetic" and at_least(self.synthetic_examples, 1)
             or within(self.synthetic_examples, 1, max_synthetic),
             f"in [1, {max_synthetic}] at --image-size {size} (the images, and a tenth more "
             f"held out, are generated in memory: at most {MAX_SYNTHETIC_GIB} GiB)"),
            ("--pipeline", self.pipeline, self.pipeline in (None, *PIPELINES),
             f"one of {PIPELINES}"),
            ("--width", self.width, is_num(self.width) and 0 < self.width <= MAX_WIDTH,
             f"> 0 and <= {MAX_WIDTH:g} (a width of {MAX_WIDTH:g} already has over a billion "
             "parameters)"),
            ("--dropout", self.dropout, fraction(self.dropout), "in [0, 1)"),
            ("--aux-dropout", self.aux_dropout, fraction(self.aux_dropout), "in [0, 1)"),
            ("--aux-weight", self.aux_weight, is_num(self.aux_weight) and self.aux_weight >= 0,
             "a finite number >= 0"),
            ("--epochs", self.epochs, within(self.epochs, 1, MAX_EPOCHS),
             f"in [1, {MAX_EPOCHS}]"),
            ("--batch-size", self.batch_size, within(self.batch_size, 1, MAX_BATCH_SIZE),
             f"in [1, {MAX_BATCH_SIZE}] (no device holds more GoogLeNet activations at once)"),
            ("--lr", self.lr, is_num(self.lr) and self.lr > 0, "a finite number > 0"),
            ("--lr-scaling", self.lr_scaling, self.lr_scaling in LR_SCALINGS,
             f"one of {LR_SCALINGS}"),
            ("--momentum", self.momentum, fraction(self.momentum), "in [0, 1)"),
            ("--weight-decay", self.weight_decay,
             is_num(self.weight_decay) and self.weight_decay >= 0, "a finite number >= 0"),
            ("--warmup-epochs", self.warmup_epochs, self.warmup_epochs is None
             or (is_num(self.warmup_epochs) and 0 <= self.warmup_epochs <= max_warmup),
             "in [0, --freeze-epochs] (warm-up is part of the frozen phase)"
             if at_least(self.freeze_epochs, 1) else "in [0, --epochs]"),
            ("--freeze-epochs", self.freeze_epochs, within(self.freeze_epochs, 0, max(
                0, (self.epochs if is_int(self.epochs) else 1) - 1)),
             "an integer in [0, --epochs - 1] (the epochs after it train the backbone too)"),
            ("--freeze-epochs", self.freeze_epochs, self.freeze_epochs == 0
             or self.weights is not None,
             "0 without --weights (only pretrained weights have a backbone to freeze)"),
            ("--finetune-lr-factor", self.finetune_lr_factor, self.finetune_lr_factor is None
             or (is_num(self.finetune_lr_factor) and 0 < self.finetune_lr_factor <= 1),
             "in (0, 1]"),
            ("--finetune-lr-factor", self.finetune_lr_factor, self.finetune_lr_factor is None
             or at_least(self.freeze_epochs, 1),
             "unset without --freeze-epochs N (it scales --lr after the frozen phase)"),
            ("--label-smoothing", self.label_smoothing, fraction(self.label_smoothing),
             "in [0, 1)"),
            ("--pad", self.pad, is_int(self.pad) and 0 <= self.pad <= self.image_size,
             "in [0, --image-size]"),
            ("--cutout", self.cutout, is_int(self.cutout) and 0 <= self.cutout <= self.image_size
             and (self.augment or self.cutout == 0),
             "in [0, --image-size], and 0 with --no-augment (cutout is a training augmentation)"),
            ("--tta-flip", self.tta_flip, self.tta_flip in (True, False), "a boolean"),
            ("--ema-momentum", self.ema_momentum, fraction(self.ema_momentum), "in [0, 1)"),
            ("--seed", self.seed, within(self.seed, 0, MAX_SEED),
             f"in [0, {MAX_SEED}] (numpy's seed range)"),
            ("--jit", self.jit, self.jit in (None, True, False), "a boolean"),
            ("--run-eagerly", self.run_eagerly, self.run_eagerly in (True, False), "a boolean"),
            ("--precision", self.precision, self.precision in (None, *PRECISIONS),
             f"one of {PRECISIONS}"),
            ("--strategy", self.strategy, self.strategy in STRATEGIES, f"one of {STRATEGIES}"),
            ("--verbose", self.verbose, self.verbose in (0, 1, 2), "0, 1 or 2"),
            ("--init-timeout", self.init_timeout, within(self.init_timeout, 1, MAX_INIT_TIMEOUT),
             f"in [1, {MAX_INIT_TIMEOUT}] seconds"),
            ("--steps-per-execution", self.steps_per_execution,
             within(self.steps_per_execution, 1, MAX_STEPS_PER_EXECUTION),
             f"in [1, {MAX_STEPS_PER_EXECUTION}]"),
        ]
        checks.append(("blocks", self.blocks, self.blocks is None or is_block_table(self.blocks),
                       f"None or {len(BLOCK_NAMES)} rows of {len(BLOCK_FIELDS)} integers >= 1"))
        if self.weights is not None:
            checks += weights_checks(self)
        for flag, value, valid, requirement in checks:
            if not valid:
                raise ConfigError(f"{flag} must be {requirement}; got {value!r}")

    def model_config(self, num_classes):
        """The `GoogLeNetConfig` of the network this run trains (validated).

        The one place where training settings become `GoogLeNet` arguments:
        `training.recipe.build_model`, the tuner and the benchmarks build their
        models through it, and a run writes it as `model_config.json`.
        """
        size = self.image_size
        return GoogLeNetConfig(
            classes=num_classes,
            input_shape=(size, size, 3),
            stem=self.stem,
            width=self.width,
            batch_norm=self.batch_norm,
            dropout=self.dropout,
            aux_dropout=self.aux_dropout,
            blocks=self.blocks,
            # Pretrained weights fix the architecture options (see GoogLeNet's docstring).
            **self._weights_options(),
        ).validate()

    def _weights_options(self):
        entry = weights_entry(self.weights)
        if entry is None:
            return {}
        return {k: entry["arguments"][k] for k in ARCHITECTURE_OPTIONS}

    # ---- JSON ---------------------------------------------------------------
    def to_dict(self):
        """The configuration as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Builds a config from `to_dict()` output; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**{**LEGACY_VALUES, **values})

    def save(self, path):
        """Writes the configuration as JSON, atomically."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path):
        """Reads a configuration written by `save`.

        Raises:
            OSError: If the file cannot be read.
            ConfigError: If it is not a configuration (see `read_config_dict`).
        """
        return cls.from_dict(read_config_dict(path))

    def resume_differences(self, other):
        """Fields (other than `RESUME_INDEPENDENT`) whose values differ from `other`'s.

        `lr_scaling` only counts when the peak learning rates differ (at batch
        `LR_REFERENCE_BATCH` both rules give `lr`, so the same training).
        """
        return [
            f.name
            for f in dataclasses.fields(self)
            if f.name not in RESUME_INDEPENDENT and getattr(self, f.name) != getattr(other, f.name)
            and not (f.name == "lr_scaling" and self.peak_lr == other.peak_lr)
        ]


def _process_checks(config):
    """`TrainConfig.resolve_processes`'s checks: (flag, value, valid, requirement)."""
    n = config.num_processes
    addresses = config.job_addresses.split(",") if isinstance(config.job_addresses, str) else []
    well_formed = bool(addresses) and all(is_address(a) for a in addresses)
    return [
        ("--num-processes", n, within(n, 1, MAX_PROCESSES), f"in [1, {MAX_PROCESSES}]"),
        ("--process-id", config.process_id, is_int(config.process_id) and is_int(n)
         and 0 <= config.process_id < n, f"in [0, --num-processes) = [0, {n})"),
        ("--job-addresses", config.job_addresses, well_formed and len(addresses) in (1, n),
         "HOST:PORT of process 0, or the comma-separated HOST:PORT of all --num-processes "
         "processes (process 0 first)"),
    ]


def read_config_dict(path):
    """The JSON object of a run's `config.json`, as a dict (not yet a `TrainConfig`).

    Raises:
        OSError: If the file cannot be read.
        ConfigError: If it is not JSON, is nested too deeply, or is not an object;
            the message names the file.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        values = parse_json(text)
    except ValueError as e:
        raise ConfigError(f"{os.fspath(path)}: not a run configuration ({e})") from e
    if not isinstance(values, dict):
        raise ConfigError(f"{os.fspath(path)}: not a run configuration (a JSON "
                          f"{type(values).__name__}; expected an object)")
    return values
