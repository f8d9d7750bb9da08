"""One worker of a two-worker `tf.distribute.MultiWorkerMirroredStrategy` Keras run.

    python tests/tf_multi_worker_probe.py PORT0,PORT1 INDEX

The shape of TensorFlow's "Multi-worker training with Keras" tutorial, with
our network: `TF_CONFIG` names two workers on 127.0.0.1, the model is built
and compiled in the strategy's scope and trained with `model.fit` on a
`tf.data` dataset. Prints `FIT FINISHED` if `fit` returns; otherwise the
exception ends the process with a traceback and a non-zero status.

`tests/test_distributed.py` runs two of these to find out whether Keras 3
trains under this strategy with the installed versions (keras-team/keras#20585),
which is why `--strategy multi-worker` refuses the TensorFlow backend.
"""

import json
import os
import sys


def main(ports, index):
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports.split(",")]},
        "task": {"type": "worker", "index": int(index)},
    })
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_googlenet

    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # first, as the tutorial says
    print(f"replicas in sync: {strategy.num_replicas_in_sync}", flush=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 32)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(16)
    with strategy.scope():
        model = keras_googlenet.GoogLeNet(input_shape=(32, 32, 3), classes=10, width=0.1,
                                          stem="cifar", weights=None, aux_logits=False)
        model.compile(optimizer="sgd", metrics=["accuracy"],
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0)
    print("FIT FINISHED", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
