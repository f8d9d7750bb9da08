"""Writes keras_googlenet/imagenet_classes.txt, the 1000 ImageNet classes.

One line per class, in torchvision's class order (the sorted WordNet ids, as
ImageFolder orders them): `<wnid>\t<name>`. The WordNet ids come from
TensorFlow Datasets' `imagenet2012/labels.txt`, the names from torchvision's
`torchvision.models._meta._IMAGENET_CATEGORIES`. Run once, from the repo root,
where both packages are installed:

    python tools/make_imagenet_classes.py
"""

import importlib.resources
import os

from torchvision.models._meta import _IMAGENET_CATEGORIES

OUT = os.path.join(os.path.dirname(__file__), "..", "keras_googlenet", "imagenet_classes.txt")


def main():
    labels = importlib.resources.files("tensorflow_datasets") / "datasets/imagenet2012/labels.txt"
    wnids = labels.read_text().split()
    if len(wnids) != 1000 or wnids != sorted(wnids) or len(_IMAGENET_CATEGORIES) != 1000:
        raise SystemExit("expected 1000 sorted WordNet ids and 1000 names")
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        for wnid, name in zip(wnids, _IMAGENET_CATEGORIES):
            f.write(f"{wnid}\t{name}\n")


if __name__ == "__main__":
    main()
