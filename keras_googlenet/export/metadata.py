"""TFLite model metadata: what MediaPipe Tasks and Android Studio read from a `.tflite` file.

`embed_metadata` adds to a converted `.tflite` flatbuffer

- a `TFLITE_METADATA` entry (a `ModelMetadata` flatbuffer of the published
  TFLite metadata schema, `metadata_schema.fbs`, file identifier `M001`):
  model name, description, version, author and license; the input as an RGB
  image of the model's size with pixel range 0-255 and normalization mean 0,
  std 1 (the model scales raw pixels itself, so clients feed them unchanged);
  the output as class probabilities (range 0-1) whose labels are the
  associated file `labels.txt` (type `TENSOR_AXIS_LABELS`);
- `labels.txt` itself, in a zip archive appended to the flatbuffer, where the
  metadata readers look for associated files (the TFLite interpreter ignores
  bytes after the flatbuffer).

This is the layout tflite-support's `MetadataPopulator` writes. Its writers
cannot be used here: tflite-support pins protobuf<4 (TensorFlow 2.21 needs
protobuf>=6) and MediaPipe's protobuf-free releases lack the compiled module
its writer imports. So the metadata table is built with the `flatbuffers`
package (a TensorFlow dependency) and the model is re-packed with the TFLite
schema's generated code that `ai_edge_litert` ships. The operators, tensors,
weights and `serving_default` signature are kept as they are.
"""

import io
import zipfile

import numpy as np

from keras_googlenet.export.errors import ExportError

#: Name of the model's metadata entry that metadata readers look up.
METADATA_NAME = "TFLITE_METADATA"
#: File identifiers of the metadata and model flatbuffers.
METADATA_IDENTIFIER = b"M001"
MODEL_IDENTIFIER = b"TFL3"
#: Oldest metadata parser that understands every field written here: all of
#: them belong to the schema's first release (fields added later are listed in
#: the readers' `metadata_version.cc`; none of them is used).
MIN_PARSER_VERSION = "1.0.0"
#: `metadata_schema.fbs` enum values used here.
_FEATURE_PROPERTIES, _IMAGE_PROPERTIES = 1, 2  # union ContentProperties
_NORMALIZATION_OPTIONS = 1  # union ProcessUnitOptions
_RGB = 1  # enum ColorSpaceType
_TENSOR_AXIS_LABELS = 2  # enum AssociatedFileType
#: Alignment of the re-packed weight buffers: the TFLite schema asks for 16
#: (`force_align: 16` on `Buffer.data`), which the generated Python code ignores
#: (it would place them at any byte; the converter's own file has them 4-aligned).
_BUFFER_ALIGNMENT = 16


#: The general fields `export(..., metadata={...})` may set.
METADATA_FIELDS = ("name", "description", "version", "author", "license")


def resolve_metadata(metadata, defaults):
    """The general metadata fields to embed, or None for `metadata=False`.

    Args:
        metadata: True (the `defaults`), False / None (embed nothing), or a dict
            of `METADATA_FIELDS` overriding the defaults (a None value leaves
            that field out).
        defaults: The default value of every field in `METADATA_FIELDS`.

    Raises:
        ExportError: For another type, an unknown field, or a value that is not
            a non-empty string; or if the `flatbuffers` package is missing.
    """
    if metadata is None or metadata is False:
        return None
    if metadata is True:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ExportError(
            f"metadata must be True, False or a dict of {', '.join(METADATA_FIELDS)}. "
            f"Received: metadata={metadata!r}"
        )
    unknown = sorted(set(metadata) - set(METADATA_FIELDS))
    if unknown:
        raise ExportError(
            f"Unknown metadata field(s) {unknown}; choose from {', '.join(METADATA_FIELDS)}."
        )
    fields = {**defaults, **metadata}
    for key, value in fields.items():
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ExportError(
                f"metadata[{key!r}] must be a non-empty string or None. Received: {value!r}"
            )
        if value is not None and not _is_utf8(value):
            raise ExportError(f"metadata[{key!r}] is not valid UTF-8 text. Received: {value!r}")
    _flatbuffers()  # fail before anything is written
    return fields


def _is_utf8(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. undecodable bytes read with
        return False  # errors="surrogateescape"
    return True


def _flatbuffers():
    try:
        import flatbuffers
    except ImportError as e:
        raise ExportError(
            "TFLite metadata was asked for but the `flatbuffers` package is not installed: "
            "`pip install flatbuffers` (a TensorFlow dependency) or pass metadata=False "
            "(--no-metadata)."
        ) from e
    return flatbuffers


# ---- writing the ModelMetadata flatbuffer (field slots as in metadata_schema.fbs) --------


def _table(builder, fields):
    """Ends a table of `fields`: `(slot, kind, value)` with kind "offset", "uint8" or "uint32"."""
    builder.StartObject(max(slot for slot, _, _ in fields) + 1)
    for slot, kind, value in fields:
        if value is None:
            continue
        if kind == "offset":
            builder.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "uint8":
            builder.PrependUint8Slot(slot, value, 0)
        else:
            builder.PrependUint32Slot(slot, value, 0)
    return builder.EndObject()


def _vector(builder, offsets):
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _floats(builder, values):
    return builder.CreateNumpyVector(np.asarray(values, np.float32))


def _string(builder, text):
    return None if text is None else builder.CreateString(text)


def _stats(builder, low, high):  # table Stats {max, min}
    return _table(builder, [(0, "offset", _floats(builder, high)),
                            (1, "offset", _floats(builder, low))])


def _labels_file(builder, labels_name):  # table AssociatedFile {name, description, type}
    name = builder.CreateString(labels_name)
    description = builder.CreateString("Class names, one a line, in output order.")
    return _table(builder, [(0, "offset", name), (1, "offset", description),
                            (2, "uint8", _TENSOR_AXIS_LABELS)])


def _input_tensor(builder, name, size):
    height, width = size
    image_size = _table(builder, [(0, "uint32", width), (1, "uint32", height)])
    properties = _table(builder, [(0, "uint8", _RGB), (1, "offset", image_size)])
    # table Content {content_properties (union: type in slot 0, value in 1), range}
    content = _table(builder, [(0, "uint8", _IMAGE_PROPERTIES), (1, "offset", properties)])
    # Raw pixels go in unchanged (mean 0, std 1): the model scales them itself.
    normalization = _table(builder, [(0, "offset", _floats(builder, [0.0] * 3)),
                                     (1, "offset", _floats(builder, [1.0] * 3))])
    unit = _table(builder, [(0, "uint8", _NORMALIZATION_OPTIONS), (1, "offset", normalization)])
    # table TensorMetadata {name, description, dimension_names, content, process_units, stats}
    return _table(builder, [
        (0, "offset", builder.CreateString(name)),
        (1, "offset", builder.CreateString(
            f"RGB image, {height}x{width}, raw pixel values 0-255 (uint8); the model scales "
            "them itself.")),
        (3, "offset", content),
        (4, "offset", _vector(builder, [unit])),
        (5, "offset", _stats(builder, [0.0], [255.0])),
    ])


def _output_tensor(builder, name, labels_name):
    content = _table(builder, [(0, "uint8", _FEATURE_PROPERTIES),
                               (1, "offset", _table(builder, [(0, "uint8", None)]))])
    labels = _vector(builder, [_labels_file(builder, labels_name)])
    return _table(builder, [
        (0, "offset", builder.CreateString(name)),
        (1, "offset", builder.CreateString(
            f"Softmax probabilities of the classes, in the order of {labels_name}.")),
        (3, "offset", content),
        (5, "offset", _stats(builder, [0.0], [1.0])),
        (6, "offset", labels),
    ])


def model_metadata(*, name, description, version, author, license, input_name, input_size,
                   output_name, labels_name):
    """The `ModelMetadata` flatbuffer (bytes, identifier `M001`) of a batch-1 image classifier.

    Args:
        name, description, version, author, license: The model's general fields
            (strings; None leaves one out).
        input_name: Name of the image input tensor.
        input_size: `(height, width)` of the input.
        output_name: Name of the probabilities output tensor.
        labels_name: Name of the associated labels file.
    """
    flatbuffers = _flatbuffers()
    builder = flatbuffers.Builder(1024)
    inputs = _vector(builder, [_input_tensor(builder, input_name, input_size)])
    outputs = _vector(builder, [_output_tensor(builder, output_name, labels_name)])
    # table SubGraphMetadata {name, description, input_tensor_metadata, output_tensor_metadata}
    subgraph = _table(builder, [(0, "offset", builder.CreateString("image_classifier")),
                                (2, "offset", inputs), (3, "offset", outputs)])
    # table ModelMetadata {name, description, version, subgraph_metadata, author, license,
    # associated_files, min_parser_version}
    root = _table(builder, [
        (0, "offset", _string(builder, name)),
        (1, "offset", _string(builder, description)),
        (2, "offset", _string(builder, version)),
        (3, "offset", _vector(builder, [subgraph])),
        (4, "offset", _string(builder, author)),
        (5, "offset", _string(builder, license)),
        (7, "offset", builder.CreateString(MIN_PARSER_VERSION)),
    ])
    builder.Finish(root, file_identifier=METADATA_IDENTIFIER)
    return bytes(builder.Output())


# ---- putting it into the model ---------------------------------------------------------


def _aligned_buffer_class(schema):
    class AlignedBufferT(schema.BufferT):
        def Pack(self, builder):  # noqa: N802 (the generated code's name)
            data = None
            if self.data is not None and len(self.data):
                raw = np.asarray(self.data, np.uint8).tobytes()
                builder.StartVector(1, len(raw), _BUFFER_ALIGNMENT)
                builder.head = builder.head - len(raw)
                builder.Bytes[builder.head:builder.head + len(raw)] = raw
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBufferT


def embed_metadata(flatbuffer, metadata, files):
    """A copy of a `.tflite` flatbuffer with `metadata` and associated `files` embedded.

    Args:
        flatbuffer: The converter's `.tflite` bytes (without metadata of ours).
        metadata: A `ModelMetadata` flatbuffer (see `model_metadata`).
        files: `{name: bytes}` of associated files, zipped after the model.

    Returns:
        The new `.tflite` file's bytes.
    """
    flatbuffers = _flatbuffers()
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    if any(m.name.decode() == METADATA_NAME for m in model.metadata or []):
        raise ValueError(f"The model already has a {METADATA_NAME} entry.")
    aligned = _aligned_buffer_class(schema)
    buffers = []
    for buffer in model.buffers or []:
        copy = aligned()
        copy.data, copy.offset, copy.size = buffer.data, buffer.offset, buffer.size
        buffers.append(copy)
    entry = aligned()
    entry.data = np.frombuffer(metadata, np.uint8)
    buffers.append(entry)
    model.buffers = buffers
    record = schema.MetadataT()
    record.name = METADATA_NAME
    record.buffer = len(buffers) - 1
    model.metadata = [*(model.metadata or []), record]
    builder = flatbuffers.Builder(len(flatbuffer) + len(metadata) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=MODEL_IDENTIFIER)
    out = io.BytesIO()
    out.write(builder.Output())
    # Mode "a" on bytes that are not a zip appends an archive after them.
    with zipfile.ZipFile(out, "a") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def embedded_files(model_bytes):
    """`{name: bytes}` of the associated files zipped into a `.tflite` file ({} if none)."""
    stream = io.BytesIO(bytes(model_bytes))
    if not zipfile.is_zipfile(stream):
        return {}
    with zipfile.ZipFile(stream) as archive:
        return {name: archive.read(name) for name in archive.namelist()}
