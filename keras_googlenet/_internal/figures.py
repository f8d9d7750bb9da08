"""PNG figures: drawn with matplotlib's Agg canvas, written atomically, never fatal.

The project's pictures (a run's `curves.png` and `confusion.png`, a search's `trials.png`, an
export's `export_report.png`) are drawn here the same way:

- matplotlib is imported on first use, and only its object-oriented API: a
  `matplotlib.figure.Figure` rendered by `FigureCanvasAgg`. Neither pyplot nor
  `matplotlib.use` is touched, so drawing needs no display and leaves the
  user's global backend (a notebook's, a script's) as it was;
- the figure is drawn under matplotlib's default style (a user's
  `matplotlibrc` does not change the picture) at `DPI`, so a figure of
  `size` pixels is a PNG of exactly that many pixels;
- the PNG is rendered in memory and then written with
  `keras_googlenet._internal.fileio.atomic_write_bytes`: an error while drawing leaves
  the previous file untouched, and a kill never leaves half a PNG;
- `try_write_png` turns any failure (matplotlib missing, a bad value, a full
  disk) into one logged line, for callers that must go on (a training run).
"""

import io
import sys

from keras_googlenet._internal.fileio import atomic_write_bytes

#: Dots per inch of every figure: `size` pixels are `size / DPI` inches.
DPI = 100


def new_figure(size):
    """An empty `matplotlib.figure.Figure` of `size = (width, height)` pixels.

    Uses the constrained layout, so titles and labels never overlap.
    """
    from matplotlib.figure import Figure

    width, height = size
    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")


def png_bytes(draw):
    """The PNG of the figure that `draw()` returns, drawn under matplotlib's default style."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with matplotlib.style.context("default"):
        figure = draw()
        canvas = FigureCanvasAgg(figure)
        buffer = io.BytesIO()
        # print_png renders at the figure's own dpi (savefig's rcParams such as
        # savefig.bbox='tight' would change the pixel size).
        canvas.print_png(buffer)
    return buffer.getvalue()


def write_png(path, draw):
    """Writes the figure that `draw()` returns to `path` as a PNG, atomically.

    Args:
        path: The PNG file.
        draw: A function of no arguments returning a `Figure` (see `new_figure`).

    Raises:
        Whatever `draw` or matplotlib raises (ImportError without matplotlib);
        `path` is then untouched.
    """
    atomic_write_bytes(path, png_bytes(draw))


def try_write_png(path, draw, what, log=None):
    """`write_png`, but a failure is logged in one line instead of raised.

    Args:
        path, draw: As for `write_png`.
        what: What the picture is, for the message (e.g. "the training curves").
        log: Called with the one-line message (default: print to stderr).

    Returns:
        Whether the file was written.
    """
    try:
        write_png(path, draw)
    except Exception as e:  # a picture never stops the work it illustrates
        if isinstance(e, ImportError) and (e.name or "").split(".")[0] == "matplotlib":
            why = "matplotlib is not installed: pip install matplotlib"
        else:
            why = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        message = f"notice: {what} ({path}) not drawn: {why}"
        if log is None:
            print(message, file=sys.stderr)
        else:
            log(message)
        return False
    return True
