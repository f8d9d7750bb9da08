"""MediaPipe Tasks as a client of the exported `.tflite` files.

`mediapipe.tasks.python.vision.ImageClassifier` is the Python twin of the
Android `ImageClassifier`: it reads the TFLite metadata the export embeds
(labels, input image and normalization). A small model (CIFAR stem, 32x32,
width 0.125) is trained for a moment on real CIFAR-10 images, exported to
every TFLite format, and MediaPipe's answers are compared with the LiteRT
interpreter's on real images. The metadata's fields are read back with the
schema code MediaPipe ships, and the converter's own flatbuffer (captured
during the export) is compared with the written file to show that adding
metadata changes no output byte and not the `serving_default` signature.
"""

import io
import os
import tarfile

import numpy as np
import pytest

from export_helpers import listing
from training_helpers import CIFAR_ARCHIVE

from keras_googlenet import export as ex
from keras_googlenet.export import exporter

pytestmark = [pytest.mark.backends("tensorflow"), pytest.mark.slow]

PER_CLASS = 8  # training images per CIFAR class
CHECKED = 24  # images MediaPipe and LiteRT both classify
SIZE = 32


def read_cifar(per_class):
    """`(x uint8 [N, 32, 32, 3], y, class_names)`: the first `per_class` images of each class."""
    from PIL import Image

    assert CIFAR_ARCHIVE.is_file(), f"this test needs {CIFAR_ARCHIVE}"
    found = {}
    with tarfile.open(CIFAR_ARCHIVE, "r|xz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 3:
                continue
            images = found.setdefault(parts[1], [])
            if len(images) < per_class:
                image = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
                images.append(np.asarray(image.resize((SIZE, SIZE))))
            if len(found) == 10 and all(len(v) == per_class for v in found.values()):
                break
    names = sorted(found)
    x = np.stack([image for name in names for image in found[name]])
    y = np.repeat(np.arange(len(names)), per_class)
    return x.astype(np.uint8), y, names


@pytest.fixture(scope="module")
def cifar():
    return read_cifar(PER_CLASS)


@pytest.fixture(scope="module")
def exported(cifar, tmp_path_factory):
    """`(folder, labels, converter flatbuffers by format)` of a 4-format export."""
    import keras

    from keras_googlenet import GoogLeNetConfig, build_model

    x, y, names = cifar
    keras.utils.set_random_seed(3)
    model = build_model(GoogLeNetConfig(stem="cifar", classes=len(names), width=0.125,
                                        input_shape=(SIZE, SIZE, 3)))
    model.compile(keras.optimizers.Adam(3e-3),
                  loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * 3)
    model.fit(x.astype("float32"), (y, y, y), epochs=2, batch_size=16, verbose=0)

    plain, convert = {}, exporter.convert_saved_model

    def capture(saved_model_dir, fmt, calibration_images=None):
        plain[fmt] = convert(saved_model_dir, fmt, calibration_images)
        return plain[fmt]

    folder = tmp_path_factory.mktemp("mediapipe") / "cifar"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exporter, "convert_saved_model", capture)
        report = ex.export(model, folder, formats=ex.TFLITE_FORMATS, labels=names,
                           calibration_images=x, eval_images=x, eval_labels=y, eval_samples=16,
                           repeats=1, metadata={"author": "Test Author", "version": "7"},
                           log=lambda msg: None)
    assert sorted(plain) == sorted(ex.TFLITE_FORMATS)
    return folder, names, plain, report


def buffers(data):
    """`(file offset, bytes)` of every non-empty buffer of a `.tflite` file, in order."""
    from ai_edge_litert import schema_py_generated as tfl

    model = tfl.Model.GetRootAsModel(bytearray(data), 0)
    out = []
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        field = buffer._tab.Offset(4)  # Buffer.data
        if field and buffer.DataLength():
            out.append((buffer._tab.Vector(field), buffer.DataAsNumpy().tobytes()))
    return out


def classifier(path, **options):
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    return vision.ImageClassifier.create_from_options(vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=str(path)), **options))


def mediapipe_scores(path, images, classes, **options):
    """`[N, classes]` scores (NaN where a class was not returned) and category names."""
    import mediapipe as mp

    scores = np.full((len(images), classes), np.nan)
    names = {}
    with classifier(path, **options) as task:
        for i, image in enumerate(images):
            result = task.classify(mp.Image(image_format=mp.ImageFormat.SRGB,
                                            data=np.ascontiguousarray(image)))
            (head,) = result.classifications
            for category in head.categories:
                scores[i, category.index] = category.score
                names[category.index] = category.category_name
    return scores, names


@pytest.mark.parametrize("fmt", ex.TFLITE_FORMATS)
def test_mediapipe_agrees_with_litert(exported, cifar, fmt):
    folder, labels, _, _ = exported
    x = cifar[0][::len(cifar[0]) // CHECKED][:CHECKED]  # every class
    path = folder / f"model_{fmt}.tflite"
    litert = ex.LiteRTClassifier(path).predict(x)
    scores, names = mediapipe_scores(path, x, len(labels), max_results=-1)
    assert not np.isnan(scores).any()  # every class, every image
    # Same scores (MediaPipe dequantizes the int8 file's uint8 output like LiteRTClassifier).
    np.testing.assert_allclose(scores, litert, atol=1e-6)
    # Same top-1, except where LiteRT has an exact tie for first place.
    top = scores.argmax(-1)
    assert (litert[np.arange(len(x)), top] == litert.max(-1)).all()
    ties = (litert == litert.max(-1, keepdims=True)).sum(-1) > 1
    assert (top[~ties] == litert.argmax(-1)[~ties]).all()
    assert ties.mean() < 0.5, "too many ties for the check to mean anything"
    # category_name comes from the labels embedded in the file.
    assert names == dict(enumerate(labels))


def test_mediapipe_category_allowlist_and_max_results(exported, cifar):
    folder, labels, _, _ = exported
    x = cifar[0][::10]
    allow = [labels[2], labels[7]]
    for fmt in ("float32", "int8"):
        path = folder / f"model_{fmt}.tflite"
        litert = ex.LiteRTClassifier(path).predict(x)
        scores, names = mediapipe_scores(path, x, len(labels), category_allowlist=allow)
        assert names == {2: labels[2], 7: labels[7]}
        assert np.isnan(np.delete(scores, [2, 7], axis=1)).all()
        np.testing.assert_allclose(scores[:, [2, 7]], litert[:, [2, 7]], atol=1e-6)
        scores, _ = mediapipe_scores(path, x, len(labels), max_results=1)
        assert (~np.isnan(scores)).sum(-1).tolist() == [1] * len(x)


def test_metadata_fields_read_back(exported):
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema
    from ai_edge_litert import schema_py_generated as tfl

    folder, labels, _, report = exported
    h = w = SIZE
    for fmt in ex.TFLITE_FORMATS:
        data = (folder / f"model_{fmt}.tflite").read_bytes()
        assert ex.embedded_files(data) == {"labels.txt": "".join(
            f"{label}\n" for label in labels).encode()}
        model = tfl.Model.GetRootAsModel(bytearray(data), 0)
        entries = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer()
                   for i in range(model.MetadataLength())}
        # The converter's own entries stay; ours is added.
        assert {"min_runtime_version", "TFLITE_METADATA"} <= set(entries)
        raw = model.Buffers(entries["TFLITE_METADATA"]).DataAsNumpy().tobytes()
        assert schema.ModelMetadata.ModelMetadataBufferHasIdentifier(raw, 0)
        meta = schema.ModelMetadata.GetRootAs(raw, 0)
        assert meta.Name().decode() == "cifar"
        assert "10 classes" in meta.Description().decode()
        assert meta.Author() == b"Test Author" and meta.Version() == b"7"
        assert meta.License() == b"Apache-2.0"
        assert meta.MinParserVersion() == b"1.0.0"
        (subgraph,) = [meta.SubgraphMetadata(i) for i in range(meta.SubgraphMetadataLength())]
        image = subgraph.InputTensorMetadata(0)
        assert subgraph.InputTensorMetadataLength() == 1 and image.Name() == b"image"
        content = image.Content()
        assert content.ContentPropertiesType() == schema.ContentProperties.ImageProperties
        props = schema.ImageProperties()
        props.Init(content.ContentProperties().Bytes, content.ContentProperties().Pos)
        assert props.ColorSpace() == schema.ColorSpaceType.RGB
        assert (props.DefaultSize().Width(), props.DefaultSize().Height()) == (w, h)
        unit = image.ProcessUnits(0)
        assert unit.OptionsType() == schema.ProcessUnitOptions.NormalizationOptions
        norm = schema.NormalizationOptions()
        norm.Init(unit.Options().Bytes, unit.Options().Pos)
        assert norm.MeanAsNumpy().tolist() == [0.0] * 3 and norm.StdAsNumpy().tolist() == [1] * 3
        assert (image.Stats().MinAsNumpy().tolist(), image.Stats().MaxAsNumpy().tolist()) == (
            [0.0], [255.0])
        probs = subgraph.OutputTensorMetadata(0)
        assert probs.Name() == b"probabilities"
        assert probs.Content().ContentPropertiesType() == (
            schema.ContentProperties.FeatureProperties)
        assert probs.Stats().MaxAsNumpy().tolist() == [1.0]
        file = probs.AssociatedFiles(0)
        assert file.Name() == b"labels.txt"
        assert file.Type() == schema.AssociatedFileType.TENSOR_AXIS_LABELS
        # Weight buffers keep the converter's 16-byte alignment after re-packing.
        starts = [start for start, _ in buffers(data)]
        assert len(starts) > 20 and all(start % 16 == 0 for start in starts)
    # The size benchmark's breakdown accounts for every byte of these files.
    from benchmarks.tflite_size_breakdown import breakdown

    parts = breakdown(data)
    assert sum(parts.values()) == len(data) and min(parts.values()) >= 0
    assert parts["our TFLite metadata"] == len(raw) and parts["zipped labels.txt"] > 0
    assert parts["weights int8"] > parts["quantization parameters"] > 0  # the int8 file
    assert report["metadata"]["embedded"] is True
    assert report["metadata"]["fields"]["author"] == "Test Author"
    assert all(a["metadata_bytes"] > 0 for a in report["artifacts"])


def test_adding_metadata_changes_no_output(exported, cifar):
    folder, _, plain, _ = exported
    x = cifar[0][:12]
    for fmt, flatbuffer in plain.items():
        path = folder / f"model_{fmt}.tflite"
        with_meta, without = ex.LiteRTClassifier(path), ex.LiteRTClassifier(flatbuffer)
        assert with_meta.io_contract() == without.io_contract()  # serving_default signature
        assert ex.tflite_ops(path.read_bytes()) == ex.tflite_ops(flatbuffer)
        # Every weight buffer is the same, plus one more: the metadata.
        weights = [data for _, data in buffers(path.read_bytes())]
        assert weights[:-1] == [data for _, data in buffers(flatbuffer)]
        for image in x:
            outputs = []
            for runner in (with_meta, without):
                runner._feed(image)
                runner.interpreter.invoke()
                outputs.append(runner.interpreter.get_tensor(runner.output["index"]).tobytes())
            assert outputs[0] == outputs[1], fmt
        assert ex.embedded_files(flatbuffer) == {}  # the converter's file had no labels
