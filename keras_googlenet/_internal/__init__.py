"""The plumbing the library shares with the scripts: not part of the public API.

The model API is the top of `keras_googlenet` (architecture, config, model,
layers, weights, export). What it and `training`, `tuner` and `benchmarks` need
besides is here, one home each, and may change without notice:

- `environment`: the one probe of the machine and software (CPU flags, accelerator,
  package versions), what reports record and what picks XLA and mixed precision;
- `fileio`: atomic writes, the one place where the project writes a file or folder;
- `figures`: the one PNG writer (matplotlib on first use, Agg canvas, never fatal);
- `images`: the one image decoder (Pillow) and image folders;
- `logs`: TensorFlow's native log noise filtered, Keras imported quietly;
- `values`: `is_int`, the one integer check of every validation.

Each module imports only the standard library (and numpy, or a framework on first
use) and its siblings here, never the rest of the package (`setup.cfg`'s contracts).
"""
