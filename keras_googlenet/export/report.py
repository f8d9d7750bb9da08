"""The export report: agreement with Keras, size/speed targets, and its markdown table."""

import numpy as np

from keras_googlenet._internal.environment import describe
from keras_googlenet.export.labels import LABELS_FILE
from keras_googlenet.export.metadata import MIN_PARSER_VERSION

#: Name of the report written beside every export.
REPORT_FILE = "export_report.json"

#: What every `.tflite` file holds when metadata is embedded (see `export.metadata`).
METADATA_NOTE = (
    "Each .tflite file holds TFLite metadata (the TFLITE_METADATA entry read by MediaPipe "
    "Tasks and Android Studio): the fields below, the input as an RGB image with pixel range "
    "0-255 and normalization mean 0, std 1 (feed raw pixels), the output as probabilities "
    "0-1, and labels.txt as its associated file (zipped after the model)."
)
#: The one line logged (and recorded) when metadata is turned off.
NO_METADATA_NOTE = (
    "TFLite metadata not embedded (metadata=False / --no-metadata): the labels ship only as "
    "labels.txt, and MediaPipe Tasks' category_name and category_allowlist will not work."
)


def metadata_summary(fields):
    """The report's `metadata` entry for the embedded `fields` (None: not embedded)."""
    if fields is None:
        return {"embedded": False, "note": NO_METADATA_NOTE}
    return {"embedded": True, "fields": fields, "associated_files": [LABELS_FILE],
            "min_parser_version": MIN_PARSER_VERSION, "note": METADATA_NOTE}


def compare(probs, reference, y=None):
    """Top-1 agreement and max abs difference of `probs` with `reference` (+ accuracy on `y`)."""
    top = probs.argmax(-1)
    result = {
        "top1_agreement": float(np.mean(top == reference.argmax(-1))),
        "max_abs_prob_diff": float(np.abs(probs - reference).max()),
    }
    if y is not None:
        result["accuracy"] = float(np.mean(top == y))
    return result


def add_float32_ratios(artifacts):
    """Adds `size_vs_float32` and `speedup_vs_float32` to each TFLite artifact row."""
    float32 = next((a for a in artifacts if a["format"] == "float32"), None)
    for a in artifacts:
        if float32 is not None and a["format"] != "saved_model":
            a["size_vs_float32"] = a["size_bytes"] / float32["size_bytes"]
            a["speedup_vs_float32"] = float32["latency_ms"] / a["latency_ms"]
    return artifacts


def targets(artifacts, labelled):
    """The deployment targets (agreement, int8 accuracy loss, size, speed): name -> met."""
    by = {a["format"]: a for a in artifacts}
    met = {}
    for fmt in ("float32", "float16"):
        if fmt in by:
            met[f"{fmt}_top1_agreement>=0.995"] = by[fmt]["top1_agreement"] >= 0.995
    if "int8" in by and "float32" in by:
        i8, f32 = by["int8"], by["float32"]
        if labelled:
            met["int8_accuracy_loss<=1.0pt"] = 100 * (f32["accuracy"] - i8["accuracy"]) <= 1.0
        met["int8_size<=30%_of_float32"] = i8["size_bytes"] <= 0.30 * f32["size_bytes"]
        met["int8_faster_than_float32"] = i8["latency_ms"] < f32["latency_ms"]
    return met


def environment():
    """The machine and package versions the report was measured on."""
    return describe()


def format_report(report):
    """The report as a markdown table (one row per artifact)."""
    has_acc = report["sample"]["labelled"]
    lines = [
        f"Export {report['name']!r}: head {report['head']}, input uint8 "
        f"{report['input']['shape']}, {report['classes']} classes, "
        f"{report['flops'] / 1e6:.1f}M multiply-adds; sample: {report['sample']['images']} "
        f"{report['sample']['source']}; latency: batch 1, {report['latency']['threads']} "
        f"thread(s), median of {report['latency']['repeats']}.",
        "",
        "| artifact | size | vs float32 | latency (ms) | top-1 agreement | max abs prob diff"
        + (" | accuracy" if has_acc else "") + " | GPU delegate | full integer |",
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if has_acc else "") + "---|---|",
    ]
    if has_acc:
        lines.append(
            f"| Keras (reference) | | | | 100.00% | 0 | {100 * report['keras']['accuracy']:.2f}% "
            "| | |"
        )
    for a in report["artifacts"]:
        name = "SavedModel (TF)" if a["format"] == "saved_model" else a["file"]
        ratio = f"{100 * a['size_vs_float32']:.0f}%" if "size_vs_float32" in a else ""
        row = (
            f"| {name} | {a['size_bytes'] / 1e6:.2f} MB | {ratio} | {a['latency_ms']:.2f} | "
            f"{100 * a['top1_agreement']:.2f}% | {a['max_abs_prob_diff']:.4f} |"
        )
        if has_acc:
            row += f" {100 * a['accuracy']:.2f}% |"
        gpu, integer = a.get("gpu_delegate"), a.get("integer")
        row += (" |" if gpu is None else
                f" {'yes' if gpu['compatible'] else 'no: ' + '; '.join(gpu['flagged'])} |")
        row += " |" if integer is None else f" {'yes' if integer['full_integer'] else 'no'} |"
        lines.append(row)
    if report["targets"]:
        lines.append("")
        lines.append(
            "Targets: "
            + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in report["targets"].items())
        )
        lines.append(
            "(Targets are advisory checks of a phone-ready export: float32/float16 agree with "
            "Keras on >= 99.5% of top-1 answers, int8 loses <= 1 accuracy point, is <= 30% of "
            "the float32 file and faster. A FAIL does not fail the export: every file is "
            "written and usable; see export_report.json.)"
        )
    return "\n".join(lines)
