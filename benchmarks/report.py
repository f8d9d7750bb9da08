"""The JSON document and the markdown table every benchmark writes.

`report` records the command, the settings, the machine
(`keras_googlenet._internal.environment.describe`), the load average at the start and the
end, the FLOP convention (`benchmarks.cases`) and the results; the benchmarks
write it with `keras_googlenet._internal.fileio.atomic_write_json`. This module imports
no framework.
"""

import sys
from datetime import datetime, timezone

from benchmarks.cases import FLOP_CONVENTION
from keras_googlenet._internal.environment import describe, load_average


def report(name, settings, results, *, extra=None, load_start=None):
    """The JSON document a benchmark writes."""
    doc = {
        "benchmark": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks." + name + " " + " ".join(sys.argv[1:]),
        "settings": settings,
        "environment": describe(),
        "load_average": {"start": load_start, "end": load_average(),
                         "note": "1, 5, 15-minute load averages (os.getloadavg)"},
        "flop_convention": FLOP_CONVENTION,
        "timing": "median of timed repeats, interleaved across cases in one run; each repeat "
                  "times steps-1 optimizer steps after a warm-up (compilation excluded)",
        "results": results,
    }
    doc.update(extra or {})
    return doc


def markdown_table(results, *, peak=False):
    """Training results as a markdown table (one row per case).

    `spread` is (max - min) / median of the repeats; `vs first` the median over
    repeats of the images/s ratio to the first row of the same group (the cases
    alive together, see `max_alive`), measured in the same pass.
    """
    header = ["setting", "images/s", "spread", "vs first", "step (ms)", "GFLOP/s"]
    if peak:
        header.append("utilisation")
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for r in results:
        if r["status"] != "ok":
            cells = [r["label"], "error: " + r["error"].splitlines()[0][:80]] + [""] * (len(header) - 2)
        elif r["framework"] == "matmul":
            cells = [r["label"], "", "", _ratio(r.get("vs_first")), "",
                     f"{1000 * r['achieved_tflops']:.1f}"]
            if peak:
                cells.append(_pct(r["utilisation"]))
        else:
            cells = [
                r["label"],
                f"{r['images_per_second']:.1f}",
                f"{100 * r['spread']:.0f}%",
                _ratio(r.get("vs_first")),
                f"{1000 * r['step_time_s']:.0f}",
                f"{1000 * r['achieved_tflops']:.1f}",
            ]
            if peak:
                cells.append(_pct(r["utilisation"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ratio(value):
    return "" if value is None else f"{value:.2f}x"


def _pct(value):
    return "" if value is None else f"{100 * value:.1f}%"
