"""GoogLeNet as a KerasHub model: backbone, image classifier, preprocessor and presets.

    >>> import keras_googlenet, keras_hub
    >>> keras_googlenet.hub.save_preset("runs/cifar", "presets/cifar")
    >>> classifier = keras_hub.models.ImageClassifier.from_preset("presets/cifar")
    >>> classifier.predict(images)            # raw pixels, any size: resized by the preprocessor

KerasHub (`pip install keras-googlenet[hub]`) has no GoogLeNet of its own; this
module adds one in KerasHub's pattern:

- `GoogLeNetBackbone`: the network without its heads (`GoogLeNet(include_top=False)`,
  a 4D feature map), configured by `GoogLeNetConfig`'s network fields;
- `GoogLeNetImageClassifier`: an `ImageClassifier` whose head (average pooling,
  dropout, dense) is the network's `main` head. The auxiliary heads are a
  training detail of the paper's network and are not part of a preset;
- `GoogLeNetImageClassifierPreprocessor` with `GoogLeNetImageConverter`: resizes
  images of any size to the network's input size.

Scaling happens exactly once. The backbone keeps the network's own `rescaling`
layer (raw [0, 255] pixels to [-1, 1]) when its `include_preprocessing` is True,
the default; the converter then only resizes (`scale=None`) and the backbone, like
`GoogLeNet`, its SavedModel and TFLite exports, takes raw pixels. A backbone
built with `include_preprocessing=False` needs the converter to scale
(`scale=1/127.5, offset=-1`). `GoogLeNetImageClassifier` refuses a preprocessor
whose converter scales when the backbone also does, or neither does.

The classes are registered with Keras as `keras_googlenet>GoogLeNetBackbone`, ...
(the names `config.json`, `task.json` and `preprocessor.json` record), so
`keras_hub.models.ImageClassifier.from_preset(DIR)` and
`keras_hub.models.Backbone.from_preset(DIR)` find them once this module has run.
`import keras_googlenet` does not import KerasHub: it imports this module right
after the program imports `keras_hub` (or at once if it already has).
"""

import os

import keras

try:
    import keras_hub
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        "keras_googlenet.hub needs KerasHub: pip install 'keras-googlenet[hub]'"
    ) from e

from keras_googlenet import architecture
from keras_googlenet.config import MODEL_CONFIG_FILE, GoogLeNetConfig
from keras_googlenet.export.labels import LABELS_FILE, read_labels
from keras_googlenet.model import GoogLeNet
from keras_googlenet.saving import build_model, check_weights_fit, load_model_folder

#: `GoogLeNetConfig` fields that describe the classifier heads, not the backbone.
HEAD_FIELDS = ("include_top", "pooling", "classes", "classifier_activation", "aux_logits",
               "dropout", "aux_dropout", "aux_pool", "name")

#: `GoogLeNetConfig` fields a `GoogLeNetBackbone` takes.
BACKBONE_FIELDS = tuple(f for f in GoogLeNetConfig().kwargs() if f not in HEAD_FIELDS)

#: The converter's scaling when the backbone has no `rescaling` layer: the
#: network's own, [0, 255] to [-1, 1].
PIXEL_SCALE, PIXEL_OFFSET = 1.0 / 127.5, -1.0

_register = keras.saving.register_keras_serializable(package="keras_googlenet")


@_register
class GoogLeNetBackbone(keras_hub.models.Backbone):
    """GoogLeNet's network without its heads, as a KerasHub backbone.

    Outputs the last Inception block's 4D feature map (`GoogLeNet(include_top=False)`);
    its layers have the same names as `GoogLeNet`'s, so weights copy between them
    by layer name.

    Args:
        dtype: Optional dtype policy of the model, as for `keras_hub.models.Backbone`.
        name: The model's name.
        **kwargs: `GoogLeNetConfig`'s network fields (`BACKBONE_FIELDS`:
            `input_shape`, `stem`, `width`, `blocks`, `batch_norm`,
            `include_preprocessing`, ...), and `keras.Model`'s `trainable`.

    Raises:
        ValueError: For a field that is not a backbone field, or an invalid value.
    """

    def __init__(self, *, dtype=None, name="googlenet", **kwargs):
        fields = {k: kwargs.pop(k) for k in list(kwargs) if k in BACKBONE_FIELDS}
        unknown = set(kwargs) - {"trainable"}
        if unknown:
            raise ValueError(
                f"GoogLeNetBackbone takes the network fields {list(BACKBONE_FIELDS)}. "
                f"Received: {', '.join(f'{k}={kwargs[k]!r}' for k in sorted(unknown))}"
            )
        config = GoogLeNetConfig(include_top=False, aux_logits=False, name=name,
                                 **fields).validate()
        network = GoogLeNet(**config.kwargs())
        super().__init__(inputs=network.input, outputs=network.output, name=name,
                         dtype=dtype, **kwargs)
        self.googlenet_config = config
        self.data_format = keras.config.image_data_format()

    @property
    def include_preprocessing(self):
        """Whether the backbone scales raw [0, 255] pixels itself."""
        return self.googlenet_config.include_preprocessing

    def get_config(self):
        config = super().get_config()
        fields = self.googlenet_config.to_dict()
        config.update({k: fields[k] for k in BACKBONE_FIELDS})
        return config


@_register
class GoogLeNetImageConverter(keras_hub.layers.ImageConverter):
    """Resizes images to the backbone's input size (and scales them, if it does not).

    See `keras_hub.layers.ImageConverter` for the arguments; which of the converter
    and the backbone scales pixels is explained in this module's docstring.
    """

    backbone_cls = GoogLeNetBackbone


@_register
class GoogLeNetImageClassifierPreprocessor(keras_hub.models.ImageClassifierPreprocessor):
    """`keras_hub.models.ImageClassifierPreprocessor` with a `GoogLeNetImageConverter`."""

    backbone_cls = GoogLeNetBackbone
    image_converter_cls = GoogLeNetImageConverter


@_register
class GoogLeNetImageClassifier(keras_hub.models.ImageClassifier):
    """GoogLeNet's main head over a `GoogLeNetBackbone`, as a KerasHub image classifier.

    Args:
        backbone: A `GoogLeNetBackbone`.
        num_classes: The number of classes.
        preprocessor: `None` or a `GoogLeNetImageClassifierPreprocessor`.
        pooling: `"avg"` (GoogLeNet's) or `"max"`.
        activation: The head's activation; `None` (default) gives logits.
        dropout: Dropout rate before the dense layer (GoogLeNet's 0.4 by default).
        class_names: Optional class names in output order, saved with the preset.
        **kwargs: As for `keras_hub.models.ImageClassifier`.

    Raises:
        ValueError: If `backbone` is not a `GoogLeNetBackbone`, or the preprocessor's
            converter and the backbone both scale pixels, or neither does.
    """

    backbone_cls = GoogLeNetBackbone
    preprocessor_cls = GoogLeNetImageClassifierPreprocessor

    def __init__(self, backbone, num_classes, preprocessor=None, pooling="avg",
                 activation=None, dropout=0.4, class_names=None, **kwargs):
        if not isinstance(backbone, GoogLeNetBackbone):
            raise ValueError(f"`backbone` must be a GoogLeNetBackbone. Received: backbone={backbone!r}")
        _check_scaling(backbone, preprocessor)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"`class_names` must have num_classes={num_classes} names. "
                f"Received: class_names={class_names!r}"
            )
        super().__init__(backbone, num_classes, preprocessor=preprocessor, pooling=pooling,
                         activation=activation, dropout=dropout, **kwargs)
        self.class_names = None if class_names is None else [str(c) for c in class_names]

    def get_config(self):
        config = super().get_config()
        config["class_names"] = self.class_names
        return config


def _check_scaling(backbone, preprocessor):
    converter = getattr(preprocessor, "image_converter", None)
    if converter is None:
        return
    converter_scales = converter.scale is not None or converter.offset is not None
    if converter_scales == backbone.include_preprocessing:
        raise ValueError(
            "Exactly one of the image converter and the backbone must scale pixels "
            "(with include_preprocessing=True the backbone takes raw [0, 255] pixels and "
            "the converter must have scale=None, offset=None). Received: "
            f"include_preprocessing={backbone.include_preprocessing}, "
            f"scale={converter.scale}, offset={converter.offset}"
        )


def _copy_weights(source, target, layers):
    for layer in layers:
        if layer.weights:
            target_layer = target.get_layer(layer.name)
            target_layer.set_weights(source.get_layer(layer.name).get_weights())


def image_classifier(model, config, class_names=None):
    """The `GoogLeNetImageClassifier` of a `GoogLeNet` model and its configuration.

    The backbone and the `main` head take `model`'s weights; the auxiliary heads
    are left out.

    Args:
        model: A `GoogLeNet` built from `config`, with its heads.
        config: The model's `GoogLeNetConfig`.
        class_names: Optional class names in output order.

    Returns:
        The `GoogLeNetImageClassifier`, with its preprocessor.

    Raises:
        ValueError: If `model` has no heads or does not fit `config`.
    """
    if not isinstance(config, GoogLeNetConfig):
        raise ValueError(f"`config` must be a GoogLeNetConfig. Received: config={config!r}")
    if not config.include_top:
        raise ValueError(
            "A preset classifier needs the model's main head. "
            f"Received: include_top={config.include_top}"
        )
    config = check_weights_fit(model, config)
    fields = config.kwargs()
    backbone = GoogLeNetBackbone(name=config.name, **{k: fields[k] for k in BACKBONE_FIELDS})
    _copy_weights(model, backbone, backbone.layers)
    spatial = tuple(backbone.input.shape[1:3] if backbone.data_format == "channels_last"
                    else backbone.input.shape[2:4])
    scale = None if config.include_preprocessing else PIXEL_SCALE
    offset = None if config.include_preprocessing else PIXEL_OFFSET
    converter = GoogLeNetImageConverter(
        image_size=None if None in spatial else spatial, scale=scale, offset=offset,
        data_format=backbone.data_format)
    classifier = GoogLeNetImageClassifier(
        backbone, config.classes, GoogLeNetImageClassifierPreprocessor(converter),
        activation=config.classifier_activation, dropout=config.dropout,
        class_names=class_names)
    classifier.output_dense.set_weights(model.get_layer(architecture.MAIN_HEAD).get_weights())
    return classifier


def to_googlenet(classifier):
    """The `GoogLeNet` (main head only) of a `GoogLeNetImageClassifier`, same weights.

    For `keras_googlenet.export` (SavedModel, TFLite) and everything else that takes
    a `GoogLeNet` model.

    Raises:
        ValueError: If `classifier` is not a `GoogLeNetImageClassifier` with average pooling.
    """
    if not isinstance(classifier, GoogLeNetImageClassifier) or classifier.pooling != "avg":
        raise ValueError(
            "Expected a GoogLeNetImageClassifier with pooling='avg' (GoogLeNet's head). "
            f"Received: classifier={classifier!r}"
        )
    backbone = classifier.backbone
    config = backbone.googlenet_config.replace(
        include_top=True, aux_logits=False, classes=classifier.num_classes,
        classifier_activation=classifier.activation, dropout=classifier.dropout)
    model = build_model(config)
    _copy_weights(backbone, model, backbone.layers)
    model.get_layer(architecture.MAIN_HEAD).set_weights(classifier.output_dense.get_weights())
    return model


def save_preset(model_or_run_dir, directory, *, config=None, class_names=None):
    """Writes a KerasHub preset of a trained GoogLeNet.

    The preset folder is what `GoogLeNetImageClassifier.save_to_preset` writes:
    `config.json` (the backbone), `model.weights.h5` (its weights), `task.json`
    and `task.weights.h5` (the classifier and its head), `preprocessor.json`,
    `image_converter.json` and `metadata.json`.

    Args:
        model_or_run_dir: A `GoogLeNet` model (with `config`), or a folder with a
            `model_config.json` beside its weights (a `training.cifar` run folder,
            `save_model_folder`'s folders); a folder's `labels.txt` gives the class
            names unless `class_names` is given.
        directory: The preset folder to write (created if needed).
        config: The model's `GoogLeNetConfig`; needed with a model, not with a folder.
        class_names: Optional class names in output order.

    Returns:
        The `GoogLeNetImageClassifier` that was saved.

    Raises:
        ValueError: If the model or folder cannot be read or does not fit `config`.
    """
    if isinstance(model_or_run_dir, (str, os.PathLike)):
        folder = os.fspath(model_or_run_dir)
        if config is not None:
            raise ValueError(
                f"`config` is read from the folder's {MODEL_CONFIG_FILE}; pass it only with "
                f"a model. Received: config={config!r}"
            )
        model = load_model_folder(folder)
        config = GoogLeNetConfig.load(folder)
        labels = os.path.join(folder, LABELS_FILE)
        if class_names is None and os.path.isfile(labels):
            class_names = read_labels(labels)
    elif isinstance(model_or_run_dir, keras.Model):
        model = model_or_run_dir
        if config is None:
            raise ValueError(
                "Pass the model's GoogLeNetConfig as `config` (or a run folder). "
                "Received: config=None"
            )
    else:
        raise ValueError(
            "Expected a GoogLeNet model or a run folder. "
            f"Received: model_or_run_dir={model_or_run_dir!r}"
        )
    classifier = image_classifier(model, config, class_names=class_names)
    classifier.save_to_preset(os.fspath(directory))
    return classifier


__all__ = [
    "BACKBONE_FIELDS",
    "GoogLeNetBackbone",
    "GoogLeNetImageClassifier",
    "GoogLeNetImageClassifierPreprocessor",
    "GoogLeNetImageConverter",
    "image_classifier",
    "save_preset",
    "to_googlenet",
]
