"""Running a `.tflite` file with the LiteRT interpreter (`ai_edge_litert`)."""

import os
import statistics
import time

import numpy as np


def _tensor_contract(detail):
    scale, zero_point = detail["quantization"]
    return {
        "name": detail["name"],
        "shape": [int(v) for v in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "quantization": {"scale": float(scale), "zero_point": int(zero_point)} if scale else None,
    }


class LiteRTClassifier:
    """Batch-1 inference with the LiteRT interpreter (`ai_edge_litert`).

    Feeds raw RGB uint8 images and returns float32 probabilities, dequantizing
    the uint8 output of an int8 model.

    Args:
        model: A `.tflite` file path, or its bytes.
        num_threads: Interpreter threads.
    """

    def __init__(self, model, num_threads=1):
        from ai_edge_litert.interpreter import Interpreter

        kwargs = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {
            "model_path": os.fspath(model)
        }
        self.num_threads = num_threads
        self.interpreter = Interpreter(num_threads=num_threads, **kwargs)
        self.interpreter.allocate_tensors()
        (self.input,) = self.interpreter.get_input_details()
        (self.output,) = self.interpreter.get_output_details()

    def _feed(self, image):
        x = np.asarray(image)[None]
        scale, zero_point = self.input["quantization"]
        if scale:  # a quantized input: map pixels to its integer grid
            x = np.round(x.astype(np.float32) / scale + zero_point)
            info = np.iinfo(self.input["dtype"])
            x = np.clip(x, info.min, info.max)
        self.interpreter.set_tensor(self.input["index"], x.astype(self.input["dtype"]))

    def _fetch(self):
        y = self.interpreter.get_tensor(self.output["index"])[0]
        scale, zero_point = self.output["quantization"]
        if scale:
            return (y.astype(np.float32) - zero_point) * scale
        return y.astype(np.float32)

    def predict(self, images):
        """Probabilities `[N, classes]` for uint8 images `[N, H, W, 3]`, one at a time."""
        out = []
        for image in images:
            self._feed(image)
            self.interpreter.invoke()
            out.append(self._fetch())
        return np.stack(out) if out else np.zeros((0, self.output["shape"][-1]), np.float32)

    def latency_ms(self, image, repeats=50, warmup=5):
        """Median wall time of one `invoke()` on `image`, in milliseconds."""
        self._feed(image)
        for _ in range(warmup):
            self.interpreter.invoke()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.interpreter.invoke()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)

    def io_contract(self):
        """The model's input, output and `serving_default` signature, as a JSON-ready dict."""
        runner = self.interpreter.get_signature_runner("serving_default")
        return {
            "input": _tensor_contract(self.input),
            "output": _tensor_contract(self.output),
            "signature": {
                "key": "serving_default",
                "inputs": list(runner.get_input_details()),
                "outputs": list(runner.get_output_details()),
            },
        }
