"""`python -m keras_googlenet.export` moved: the command line is `python -m training.export`."""

import sys

MESSAGE = (
    "error: the export command moved: run `python -m training.export MODEL --name NAME` "
    "(same flags) instead of `python -m keras_googlenet.export`"
)

if __name__ == "__main__":
    print(MESSAGE, file=sys.stderr)
    sys.exit(2)
