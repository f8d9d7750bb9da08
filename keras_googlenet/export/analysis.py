"""What a `.tflite` file can run on, read from the file itself.

- `gpu_compatibility`: TensorFlow's own analyzer
  (`tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)`), which
  checks every operator against the GPU delegate's rules; its verdict and the
  operators it flags.
- `integer_only`: whether a file is full-integer (integer input, output and
  every tensor; no float compute), what NPU delegates and integer-only
  accelerators need.
"""

import contextlib
import io
import re

#: The analyzer's line for a file it finds GPU-compatible.
_COMPATIBLE = "Your model looks compatible with GPU delegate"
#: The analyzer's lines naming an operator the GPU delegate will not run.
_FLAGGED = re.compile(r"GPU COMPATIBILITY WARNING: (.*)")


def gpu_compatibility(path):
    """`{"compatible": bool, "flagged": [why, ...], "checked_by": ...}` for one file."""
    import tensorflow as tf

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path), gpu_compatibility=True)
    out = text.getvalue()
    flagged = sorted({m.group(1).strip() for m in _FLAGGED.finditer(out)})
    return {
        "compatible": _COMPATIBLE in out and not flagged,
        "flagged": flagged,
        "checked_by": f"tf.lite.experimental.Analyzer (gpu_compatibility=True), "
                      f"TensorFlow {tf.__version__}",
    }


def integer_only(flatbuffer):
    """`{"full_integer": bool, "float_tensors": N, "input": dtype, "output": dtype}`.

    Full-integer means integer input and output and no float tensor anywhere in
    the graph (so no operator computes in float).
    """
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = schema.Model.GetRootAsModel(bytearray(flatbuffer), 0)
    graph = model.Subgraphs(0)
    types = [graph.Tensors(i).Type() for i in range(graph.TensorsLength())]
    floats = sum(names.get(t, "").startswith(("float", "bfloat", "complex")) for t in types)
    io_types = [names.get(types[graph.Inputs(0)]), names.get(types[graph.Outputs(0)])]
    return {
        "full_integer": floats == 0 and all(t and t.startswith(("int", "uint")) for t in io_types),
        "float_tensors": int(floats),
        "input": io_types[0],
        "output": io_types[1],
    }


def gpu_line(file, verdict):
    """One line for the console: the analyzer's verdict on `file`."""
    if verdict["compatible"]:
        return f"{file}: runs on the GPU delegate (TensorFlow's analyzer finds no unsupported op)"
    return (f"{file}: NOT fully on the GPU delegate; the analyzer flags "
            + "; ".join(verdict["flagged"] or ["an unknown op"]))
