"""Writes keras_googlenet/imagenet_class_index.json, the 1000 ImageNet classes.

The file is Keras's own ImageNet class index, byte for byte: the one
`keras.applications.imagenet_utils.decode_predictions` downloads from
`CLASS_INDEX_PATH` and checks against MD5 c2c37ea517e94d9795004a39431a14cb
(`keras_googlenet.imagenet.KERAS_CLASS_INDEX_MD5`). Shipping it gives
`keras_googlenet.decode_predictions` keras.applications' names without a
download. Run once, from the repo root, on a machine with internet access:

    python tools/make_imagenet_classes.py
"""

import os
import shutil

import keras
from keras.src.applications import imagenet_utils

from keras_googlenet.imagenet import CLASSES_FILE, KERAS_CLASS_INDEX_MD5

OUT = os.path.join(os.path.dirname(__file__), "..", "keras_googlenet", CLASSES_FILE)


def main():
    path = keras.utils.get_file(CLASSES_FILE, imagenet_utils.CLASS_INDEX_PATH,
                                cache_subdir="models", file_hash=KERAS_CLASS_INDEX_MD5)
    shutil.copyfile(path, OUT)


if __name__ == "__main__":
    main()
