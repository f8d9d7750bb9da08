"""Redraws a picture from results written earlier (the pictures in docs/images/).

Runs draw their pictures as they go (a run's `curves.png`, a search's
`trials.png`, an export's `export_report.png`); this draws them again from the
files they came from, into `--output`:

    python tools/draw_figures.py curves runs/NAME --output docs/images/curves.png
    python tools/draw_figures.py export benchmarks/results/export_report_cifar10_w05.json \\
        --output docs/images/export_report.png
    python tools/draw_figures.py trials benchmarks/results/tuner_search.json \\
        --output docs/images/trials.png

`trials` reads the JSON of `python -m benchmarks.tuner_search` (its trials
table and the search's settings).
"""

import argparse
import json
import sys
from pathlib import Path

from keras_googlenet._internal.figures import write_png


def _curves(source):
    from training.curves import curves_figure
    from training.run import read_history

    rows = read_history(Path(source) / "history.csv")
    return lambda: curves_figure(rows, f"run {Path(source).name}: {len(rows)} epoch(s)")


def _export(source):
    from keras_googlenet.export.chart import report_figure

    report = json.loads(Path(source).read_text(encoding="utf-8"))
    return lambda: report_figure(report)


def _trials(source):
    from tuner.chart import is_paper_trial, paper_mflops, trials_figure
    from tuner.cost import CostModel
    from tuner.space import SearchSpace

    result = json.loads(Path(source).read_text(encoding="utf-8"))
    search, config = result["search"], result["search"]["best_config"]
    rows = search["trials_table"]
    low, high = search["width_range"]
    space = SearchSpace(min_width=low, max_width=high)
    cost = CostModel(config["stem"], config["input_shape"][0], config["classes"],
                     config["batch_norm"])
    width = search["best_trial"]["width"]
    return lambda: trials_figure(
        rows, paper_trials=[r["trial_id"] for r in rows if is_paper_trial(r, space)],
        paper_line=(width, paper_mflops(cost, width)), budget_mflops=search["budget_mflops"],
        title=f"{search['tuner']} search, {search['trials']} trials")


DRAW = {"curves": _curves, "export": _export, "trials": _trials}


def main(argv=None):
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("picture", choices=sorted(DRAW))
    parser.add_argument("source", help="a run folder (curves), an export_report.json (export) "
                        "or a benchmarks.tuner_search JSON (trials)")
    parser.add_argument("--output", required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    try:
        write_png(args.output, DRAW[args.picture](args.source))
    except (OSError, ValueError, KeyError, TypeError, ImportError) as e:
        print(f"error: {args.source}: {type(e).__name__}: {' '.join(str(e).split())}",
              file=sys.stderr)
        return 1
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
