"""The one configuration object of a training run.

`TrainConfig` holds every setting of `python -m training.cifar`, each declared
once as a field with its flag, help, checks and resume rule (`training.fields.flag`;
the limits and predicates of the checks are `training.checks`'). Some fields default to `None`, meaning "pick for this machine";
`TrainConfig.resolve()` fills them in, and the resolved configuration is what a
run writes to `runs/<name>/config.json` and reads back with `TrainConfig.load`.
"""

import dataclasses
import os
from dataclasses import dataclass
from typing import Optional

from keras_googlenet.architecture import AUX_HEADS, LOSS_WEIGHTS
from keras_googlenet.architecture import STEMS as MODEL_STEMS
from keras_googlenet.architecture import ARCHITECTURE_OPTIONS
from keras_googlenet.pretrained import weights_entry
from keras_googlenet.config import GoogLeNetConfig
from keras_googlenet._internal.environment import accelerator, auto_precision, cpu, tensorflow_available
from keras_googlenet._internal.fileio import atomic_write_json, parse_json
from keras_googlenet._internal.values import is_int
from training.checks import (
    BOOLEAN,
    FRACTION,
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MAX_INIT_TIMEOUT,
    MAX_NAME_LENGTH,
    MAX_SEED,
    MAX_STEPS_PER_EXECUTION,
    MAX_SYNTHETIC_GIB,
    NAME_RE,
    NON_NEGATIVE,
    at_least,
    first_failure,
    is_num,
    max_synthetic,
    max_warmup,
    min_image_size,
    weights_checks,
    within,
)
from training.cli import add_framework_logs_flag
from training.fields import (
    MAY_CHANGE,
    Check,
    ConfigError,
    differences,
    first_error,
    flag,
    from_json,
    label_of,
    legacy_values,
    must_be,
    nested,
    resume_independent,
    rule,
    setting,
    to_json,
)
from training.processes import resolve_processes

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

#: --finetune-lr-factor's default: the unfrozen phase peaks at a tenth of --lr.
DEFAULT_FINETUNE_LR_FACTOR = 0.1


_MAY_CHANGE = dict(resume=MAY_CHANGE)


def default_model(**settings):
    """A run's network by default, `GoogLeNetConfig(stem="cifar")` (the CIFAR stem, else
    `GoogLeNet`'s defaults), with `settings` changed: `TrainConfig(model=default_model(width=0.5))`."""
    return GoogLeNetConfig(**{"stem": "cifar", **settings})


@dataclass
class TrainConfig:
    """Every setting of a training run. See `python -m training.cifar --help`.

    Each field is declared once with `training.fields.flag`: its flag, help,
    checks and resume rule. Fields left at `None` are machine-dependent and
    filled by `resolve()`.
    """

    # ---- run ----------------------------------------------------------------
    name: str = flag(
        "googlenet-cifar10", "run name: runs/NAME and saved_models/NAME", group="run", checks=(
            rule(lambda v: isinstance(v, str) and bool(NAME_RE.fullmatch(v)),
                 "a plain folder name (letters, digits, '.', '_', '-', starting with a letter "
                 "or digit)"),
            rule(lambda v: len(v) <= MAX_NAME_LENGTH,
                 f"at most {MAX_NAME_LENGTH} characters (file names stop at 255)",
                 shown=lambda v: f"{len(v)} characters")))
    runs_dir: str = flag("runs", "folder of run folders", group="run")
    export_dir: str = flag("saved_models", "folder of exported SavedModels", group="run")
    export: bool = flag(True, "export the main head as a SavedModel (needs TensorFlow)",
                        group="run", **_MAY_CHANGE)
    overwrite: bool = flag(False, "train again over a finished run (or one started with other "
                           "settings)", group="run", action="store_true", **_MAY_CHANGE)
    verbose: int = flag(
        1, "progress: 1 a live line on a terminal (one line per epoch otherwise), 2 one line "
        "per epoch, 0 none", group="run", choices=(0, 1, 2),
        checks=(rule(lambda v: v in (0, 1, 2), "0, 1 or 2"),), **_MAY_CHANGE)
    framework_logs: bool = flag(False, group="run", cli=add_framework_logs_flag, **_MAY_CHANGE)
    # ---- data ---------------------------------------------------------------
    data: Optional[str] = flag(  # None: "folder" if data_dir is set, else "tfds"
        None, "data source (default: folder with --data-dir, else tfds)", group="data",
        choices=DATA_SOURCES)
    data_dir: Optional[str] = flag(
        None, "image folder DIR/train/<class>/* (optional DIR/val or DIR/test), or a "
        ".tar/.tar.xz/.zip of one", group="data")
    tfds_name: str = flag("cifar10", "TFDS dataset for --data tfds", group="data")
    tfds_dir: Optional[str] = flag(None, "TFDS data folder (default: TFDS's own)", group="data")
    cache_dir: Optional[str] = flag(
        None, "where archives are extracted (default: $KERAS_GOOGLENET_CACHE or "
        "~/.cache/keras_googlenet)", group="data", **_MAY_CHANGE)
    max_extract_mb: int = flag(  # training.data.archives.DEFAULT_MAX_EXTRACT_MB
        4096, "refuse an archive that expands to more MiB than this", group="data",
        checks=(rule(lambda v: at_least(v, 1), ">= 1"),), **_MAY_CHANGE)
    max_extract_ratio: float = flag(  # training.data.archives.DEFAULT_MAX_EXTRACT_RATIO
        200.0, "refuse an archive that expands to more than this times its size", group="data",
        checks=(rule(lambda v: is_num(v) and 1 <= v < float("inf"), "a number >= 1"),),
        **_MAY_CHANGE)
    image_size: int = flag(
        32, "train at SIZExSIZE (images are resized once when loaded)", group="data", checks=(
            Check(lambda v, c: within(v, min_image_size(c), MAX_IMAGE_SIZE),
                  lambda c: f"an integer >= {min_image_size(c)} for --stem {c.model.stem} and <= "
                  f"{MAX_IMAGE_SIZE} (larger images do not fit in memory)"),))
    limit: Optional[int] = flag(
        None, "use N examples per split (a seeded sample), for smoke runs", group="data",
        checks=(rule(lambda v: v is None or at_least(v, 1), ">= 1"),))
    val_fraction: float = flag(
        0.1, "held-out fraction of train (stratified) when there is no val/ or test/",
        group="data", checks=(FRACTION,))
    skip_bad_images: bool = flag(
        False, "skip unreadable or non-image files instead of stopping", group="data",
        action="store_true")
    synthetic_examples: int = flag(
        10000, "training images for --data synthetic", group="data", checks=(Check(
            lambda v, c: (c.data != "synthetic" and at_least(v, 1)) or within(
                v, 1, max_synthetic(c)),
            lambda c: f"in [1, {max_synthetic(c)}] at --image-size "
            f"{c.image_size if within(c.image_size, 1, MAX_IMAGE_SIZE) else 1} (the images, "
            f"and a tenth more held out, are generated in memory: at most {MAX_SYNTHETIC_GIB} "
            "GiB)"),))
    pipeline: Optional[str] = flag(  # None: "tf.data" when TensorFlow imports, else "numpy"
        None, "input pipeline: tf.data needs TensorFlow; numpy is a keras PyDataset",
        group="data", choices=PIPELINES, auto=True, **_MAY_CHANGE)
    # ---- model --------------------------------------------------------------
    # The network's settings, a keras_googlenet.GoogLeNetConfig that checks them
    # itself; model_config() adds the classes, the input shape (--image-size) and
    # the architecture options --weights fixes. Only the settings below are saved.
    model: GoogLeNetConfig = nested(default_model, group="model", settings=dict(
        stem=setting("cifar: 3x3 stem for 32x32; imagenet: the paper's (e.g. --image-size 96)",
                     choices=STEMS),
        width=setting("channel multiplier"),
        batch_norm=setting("BatchNorm after every convolution (off: the 2014 network with LRN)"),
        dropout=setting("dropout before the main classifier"),
        aux_dropout=setting("dropout in the auxiliary heads"),
        # The nine Inception blocks' channel tuples (keras_googlenet.BLOCK_FIELDS order);
        # None is the paper's Table 1. Set by `tuner.search --train-best`.
        blocks=setting(cli=False),
    ))
    # Pretrained weights (keras_googlenet.load_backbone_weights; new heads for the data's
    # classes), checked with the settings they fix (training.checks.weights_checks).
    weights: Optional[str] = flag(
        None, "fine-tune pretrained weights (new heads): imagenet or a .pth is torchvision's "
        "network (implies --stem imagenet and, unless given, --image-size 224); cifar10 is the "
        "shipped CIFAR-10 model (implies --stem cifar, --width 0.5 and, unless given, "
        "--image-size 32)", group="model", metavar="imagenet|cifar10|PATH.pth")
    aux_weight: float = flag(  # the paper's 0.3
        LOSS_WEIGHTS[next(iter(AUX_HEADS))], "loss weight of each auxiliary head (main: 1)",
        group="model", checks=(NON_NEGATIVE,))
    # ---- recipe -------------------------------------------------------------
    epochs: int = flag(100, "training epochs", group="recipe",
                       checks=(rule(lambda v: within(v, 1, MAX_EPOCHS), f"in [1, {MAX_EPOCHS}]"),))
    batch_size: int = flag(128, "global batch size", group="recipe", checks=(rule(
        lambda v: within(v, 1, MAX_BATCH_SIZE),
        f"in [1, {MAX_BATCH_SIZE}] (no device holds more GoogLeNet activations at once)"),))
    lr: float = flag(  # the peak lr; for a batch of LR_REFERENCE_BATCH under lr_scaling="linear"
        0.1, "peak learning rate (after warm-up); with --lr-scaling linear, for a batch of "
        f"{LR_REFERENCE_BATCH}", group="recipe",
        checks=(rule(lambda v: is_num(v) and v > 0, "a finite number > 0"),))
    lr_scaling: str = flag(
        "none", f"linear: the peak learning rate is --lr x --batch-size / {LR_REFERENCE_BATCH}; "
        "none: --lr as given", group="recipe", choices=LR_SCALINGS, legacy="none")
    momentum: float = flag(0.9, "SGD momentum", group="recipe", checks=(FRACTION,))
    nesterov: bool = flag(True, "Nesterov momentum", group="recipe")
    # Keras applies weight decay directly to the weights (decoupled, not through
    # the momentum buffer), so 5e-3 here matches the usual coupled 5e-4 of
    # PyTorch CIFAR recipes with momentum 0.9 (5e-4 / (1 - 0.9)).
    weight_decay: float = flag(
        5e-3, "decoupled weight decay, not on biases/BatchNorm (Keras style: 5e-3 matches "
        "PyTorch's coupled 5e-4 at momentum 0.9)", group="recipe", checks=(NON_NEGATIVE,))
    warmup_epochs: Optional[float] = flag(  # None: 5% of the first phase's epochs, at most 5
        None, "epochs of linear warm-up from 0 to --lr, then cosine decay to 0 at the last "
        "epoch (with --freeze-epochs: at the last frozen epoch; default: 5%% of --epochs, or "
        "of --freeze-epochs, at most 5)", group="recipe", checks=(Check(
            lambda v, c: v is None or (is_num(v) and 0 <= v <= max_warmup(c)),
            lambda c: "in [0, --freeze-epochs] (warm-up is part of the frozen phase)"
            if at_least(c.freeze_epochs, 1) else "in [0, --epochs]"),))
    # Fine-tuning --weights in two phases (training.recipe.run_phases): the first
    # freeze_epochs train only the new heads (backbone frozen, its BatchNorm in
    # inference mode); the rest also train the backbone, at a peak learning rate of
    # lr * finetune_lr_factor. 0: one phase, every layer trains from the start.
    freeze_epochs: int = flag(
        0, "with --weights: the first N epochs train only the new heads (backbone frozen); "
        "the rest train every layer but the backbone's BatchNorm (kept in inference mode) "
        "with a fresh optimizer, from --lr (after --lr-scaling) x --finetune-lr-factor "
        "without warm-up, cosine to 0 (default 0: every layer trains from the start)",
        group="recipe", metavar="N", legacy=0, checks=(
            Check(lambda v, c: within(v, 0, max(0, (c.epochs if is_int(c.epochs) else 1) - 1)),
                  "an integer in [0, --epochs - 1] (the epochs after it train the backbone "
                  "too)"),
            Check(lambda v, c: v == 0 or c.weights is not None,
                  "0 without --weights (only pretrained weights have a backbone to freeze)")))
    finetune_lr_factor: Optional[float] = flag(  # None: 0.1 with freeze_epochs, else unused
        None, "peak learning rate after the frozen phase, as a fraction of --lr (default with "
        f"--freeze-epochs: {DEFAULT_FINETUNE_LR_FACTOR})", group="recipe", metavar="F",
        legacy=None, checks=(
            rule(lambda v: v is None or (is_num(v) and 0 < v <= 1), "in (0, 1]"),
            Check(lambda v, c: v is None or at_least(c.freeze_epochs, 1),
                  "unset without --freeze-epochs N (it scales --lr after the frozen phase)")))
    label_smoothing: float = flag(0.1, "label smoothing of every head's cross-entropy",
                                  group="recipe", checks=(FRACTION,))
    augment: bool = flag(True, "random pad-and-crop and horizontal flip", group="recipe")
    pad: int = flag(4, "pad-and-crop padding in pixels", group="recipe", checks=(Check(
        lambda v, c: is_int(v) and 0 <= v <= c.image_size, "in [0, --image-size]"),))
    cutout: int = flag(  # side of the zeroed square (DeVries & Taylor 2017); 0: off
        0, "cutout: zero one SIZExSIZE square per training image, centred at a random pixel "
        "(clipped at the border); 0: off", group="recipe", metavar="SIZE", legacy=0, checks=(
            Check(lambda v, c: is_int(v) and 0 <= v <= c.image_size and (c.augment or v == 0),
                  "in [0, --image-size], and 0 with --no-augment (cutout is a training "
                  "augmentation)"),))
    tta_flip: bool = flag(
        False, "also evaluate with flip test-time augmentation (mean of the probabilities on "
        "the image and its mirror): *_tta columns in history.csv, val_accuracy_tta in "
        "results.json, and the best epoch picked by it", group="recipe", legacy=False,
        checks=(BOOLEAN,))
    ema: bool = flag(False, "keep an exponential moving average of the weights, evaluate it "
                     "every epoch (*_ema columns in history.csv) and use it as the final model",
                     group="recipe")
    ema_momentum: float = flag(0.999, "EMA momentum", group="recipe", checks=(FRACTION,))
    seed: int = flag(0, "seed of the split, shuffles and initialisation", group="recipe",
                     checks=(rule(lambda v: within(v, 0, MAX_SEED),
                                  f"in [0, {MAX_SEED}] (numpy's seed range)"),))
    # ---- system -------------------------------------------------------------
    jit: Optional[bool] = flag(  # None: on with a GPU (or on JAX), off on CPU
        None, "XLA compilation (default: on with a GPU or on JAX, off on CPU)", group="system",
        checks=(rule(lambda v: v in (None, True, False), "a boolean"),), **_MAY_CHANGE)
    precision: Optional[str] = flag(  # None: environment.auto_precision (see resolve)
        None, "auto: mixed_bfloat16 on recent GPUs, mixed_float16 on older ones, float32 on "
        "CPU", group="system", choices=PRECISIONS, auto=True)
    # Set by resolve: why auto picked `precision` (only a note: `precision` must match).
    precision_reason: Optional[str] = flag(None, group="system", cli=False, **_MAY_CHANGE)
    strategy: str = flag(
        "none", "mirrored: tf.distribute over local GPUs (TensorFlow); data-parallel: "
        "keras.distribution over local devices (JAX); multi-worker: one run over several "
        "processes and machines (JAX; see the distributed flags)", group="system",
        choices=STRATEGIES)
    steps_per_execution: int = flag(
        1, "training steps per compiled call; raise on GPUs to cut per-step overhead "
        "(callbacks then see every N-th batch)", group="system", checks=(rule(
            lambda v: within(v, 1, MAX_STEPS_PER_EXECUTION),
            f"in [1, {MAX_STEPS_PER_EXECUTION}]"),), **_MAY_CHANGE)
    run_eagerly: bool = flag(
        False, "debugging: run the model op by op, without tf.function/jit (slow)",
        group="system", action="store_true", checks=(BOOLEAN,), **_MAY_CHANGE)
    # ---- distributed (--strategy multi-worker) --------------------------------
    # None: from Keras's KERAS_DISTRIBUTION_* variables (training.processes), checked by
    # resolve_processes. A resumed run may start on other machines, so where each
    # process finds the others, and which one it is, may change.
    job_addresses: Optional[str] = flag(
        None, "address of process 0, the coordinator (or every process's, process 0 first); "
        "default $KERAS_DISTRIBUTION_JOB_ADDRESSES", group="distributed",
        metavar="HOST:PORT[,HOST:PORT...]", **_MAY_CHANGE)
    num_processes: Optional[int] = flag(
        None, "processes of the run; default $KERAS_DISTRIBUTION_NUM_PROCESSES",
        group="distributed")
    process_id: Optional[int] = flag(
        None, "this process's id, 0 (the chief, which writes the run folder) to N-1; default "
        "$KERAS_DISTRIBUTION_PROCESS_ID", group="distributed", **_MAY_CHANGE)
    init_timeout: int = flag(
        120, "seconds to wait for the other processes before a one-line error",
        group="distributed", checks=(rule(lambda v: within(v, 1, MAX_INIT_TIMEOUT),
                                          f"in [1, {MAX_INIT_TIMEOUT}] seconds"),), **_MAY_CHANGE)

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
        """`training.processes.resolve_processes(self)`: the multi-worker settings filled in."""
        return resolve_processes(self)

    def validate(self):
        """Checks every field; raises `ConfigError` naming the first bad one.

        Each field's own checks are declared with it (`training.fields.flag`);
        then `--data` is checked against `--data-dir`, the network's settings by
        `GoogLeNetConfig` (the library's rules), and `--weights` with the settings
        its weights fix (`training.checks.weights_checks`).
        """
        error = first_error(self)
        if error is None and self.data == "folder" and not self.data_dir:
            error = "--data folder needs --data-dir DIR (a folder or a .tar/.tar.xz/.zip archive)"
        if error is None and self.data in ("tfds", "synthetic") and self.data_dir:
            error = f"--data-dir is only used with --data folder (got --data {self.data})"
        if error is None:
            error = self._model_error()
        if error is None and self.weights is not None:
            error = first_failure(weights_checks(self))
        if error is not None:
            raise ConfigError(error)

    def _model_error(self):
        """`GoogLeNetConfig`'s check of `model_config`, said with the flags' names; or None."""
        try:
            self.model_config(1)
        except ValueError as e:
            if not hasattr(e, "argument"):  # keras_googlenet._internal.values.invalid_argument's
                raise
            return must_be(label_of(type(self), e.argument), e.requirement, repr(e.value))
        return None

    def model_config(self, num_classes):
        """The `GoogLeNetConfig` of the network this run trains (validated): `model` with
        `num_classes`, the `--image-size` input and the architecture options of `--weights`.

        `training.recipe.build_model`, the tuner and the benchmarks build their
        models from it, and a run writes it as `model_config.json`.

        Raises:
            ValueError: If a setting of `model` is invalid
                (`keras_googlenet._internal.values.invalid_argument`).
        """
        size = self.image_size
        return dataclasses.replace(
            self.model, classes=num_classes, input_shape=(size, size, 3),
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
        """The configuration as a JSON-serialisable dict (`model`: an object of its
        settings)."""
        return to_json(self)

    @classmethod
    def from_dict(cls, values):
        """Builds a config from `to_dict()` output, or from a config.json of an older
        layout (fields it lacks take their `legacy=` values; the network's settings may
        be top-level keys). Unknown keys are an error."""
        return from_json(cls, values)

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
        """Fields (other than those that may change, `RESUME_INDEPENDENT`) whose values
        differ from `other`'s.

        `lr_scaling` only counts when the peak learning rates differ (at batch
        `LR_REFERENCE_BATCH` both rules give `lr`, so the same training).
        """
        may_change = resume_independent(type(self))
        return [name for name in differences(self, other) if name not in may_change
                and not (name == "lr_scaling" and self.peak_lr == other.peak_lr)]


#: The values of fields added after runs were saved without them: a config.json
#: that lacks one was trained that way (`TrainConfig.from_dict` fills them in,
#: so that such a run resumes with the settings it was started with).
LEGACY_VALUES = legacy_values(TrainConfig)

#: Fields that may change between a killed run and its resumption: they do not
#: change the trained state (everything else must match to resume).
RESUME_INDEPENDENT = resume_independent(TrainConfig)


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
