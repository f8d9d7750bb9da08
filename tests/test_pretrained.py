"""Pretrained weights: torchvision's GoogLeNet state dicts, checked against torchvision.

torchvision's own `googlenet` (random weights, randomised BatchNorm statistics so
that every layer matters) is saved as a state dict and loaded through
`GoogLeNet(weights=path)`; outputs are compared on real CIFAR-10 photos resized
to 224x224. The download path runs against a local HTTP server on 127.0.0.1.
"""

import functools
import hashlib
import http.server
import io
import os
import subprocess
import sys
import tarfile
import threading

import keras
import numpy as np
import pytest
import torch
from PIL import Image

import keras_googlenet as kg
from keras_googlenet import pretrained
from tests.training_helpers import CIFAR_ARCHIVE, REPO

pytestmark = pytest.mark.backends("tensorflow")


def _photos():
    """Real photos: the first CIFAR-10 image of 4 classes, resized to 227x227."""
    images, classes = [], set()
    with tarfile.open(CIFAR_ARCHIVE, "r:xz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and member.name.endswith(".jpg") and parts[-2] not in classes:
                classes.add(parts[-2])
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as im:
                    images.append(np.asarray(im.convert("RGB").resize((227, 227), Image.BILINEAR)))
            if len(images) == 4:
                break
    return np.stack(images).astype("float32")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(photos, folder with googlenet.pth and legacy.pth, torchvision's outputs)."""
    out = tmp_path_factory.mktemp("torchvision")
    photos = _photos()
    np.save(out / "photos.npy", photos)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    # Its own process: importing torchvision after TensorFlow crashes.
    result = subprocess.run(
        [sys.executable, "-m", "tests.torchvision_reference", str(out / "photos.npy"), str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out / "reference.npz") as ref:
        return photos, out, dict(ref)


def _close(ours, ref):
    """Within 1e-4 of the reference's largest magnitude (float32 through 60 layers)."""
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


@pytest.mark.slow
@pytest.mark.parametrize("side", [224, 227])  # 227: odd maps, where ceil_mode matters
def test_outputs_match_torchvision_on_real_photos(reference, side):
    photos, folder, ref = reference
    images = photos[:, :side, :side]
    model = kg.GoogLeNet(weights=folder / "googlenet.pth", input_shape=(side, side, 3))
    assert model.output_names == ["main"]  # pretrained: no untrained aux heads by default
    tap = keras.Model(model.inputs, [model.get_layer("inception_4e").output, model.output])
    block, logits = tap.predict(images, verbose=0)
    expected = ref[f"logits_{side}"]
    _close(logits, expected)
    # The same top-5, in order. (A random network gives every photo much the same
    # logits; what tells the photos apart is each one's difference from the batch
    # mean, so its arg-max must agree too, and differ between photos.)
    np.testing.assert_array_equal(np.argsort(-logits)[:, :5], np.argsort(-expected)[:, :5])
    centred, expected_centred = (a - a.mean(0) for a in (logits, expected))
    np.testing.assert_array_equal(centred.argmax(1), expected_centred.argmax(1))
    assert len(set(expected_centred.argmax(1))) > 1
    _close(block, ref[f"inception4e_{side}"])


def test_paper_options_do_not_match_torchvision(reference):
    """The options matter: with the paper's pooling and padding the numbers differ."""
    photos, folder, ref = reference
    path = folder / "googlenet.pth"
    model = kg.GoogLeNet(classes=1000, input_shape=(227, 227, 3), aux_logits=False,
                         **{**kg.TORCHVISION_OPTIONS, "ceil_mode": False})
    kg.load_backbone_weights(model, path)
    model.get_layer("main").set_weights(kg.GoogLeNet(weights=path).get_layer("main").get_weights())
    expected = ref["logits_227"]
    assert np.abs(model.predict(photos, verbose=0) - expected).max() > 1e-2 * np.abs(expected).max()


def test_kept_aux_heads_match_torchvision_and_warn(reference):
    photos, folder, ref = reference
    with pytest.warns(UserWarning, match="auxiliary heads .* not trained"):
        model = kg.GoogLeNet(weights=folder / "googlenet.pth", aux_logits=True)
    aux1, aux2, main = model.predict(photos[:, :224, :224], verbose=0)
    _close(aux1, ref["aux1"])
    _close(aux2, ref["aux2"])
    _close(main, ref["logits_224"])


def test_features_without_top(reference):
    photos, folder, ref = reference
    model = kg.GoogLeNet(weights=folder / "googlenet.pth", include_top=False, pooling="avg")
    _close(model.predict(photos[:, :224, :224], verbose=0), ref["features"])


def test_builtin_scaling_equals_torchvision_transform_input(reference):
    photos, _, ref = reference
    ours = keras.ops.convert_to_numpy(
        kg.GoogLeNet(include_top=False).get_layer("rescaling")(photos[:1, :8, :8]))
    np.testing.assert_allclose(ours, ref["transform_input"], atol=1e-5)


def test_parameter_count_equals_torchvision(reference):
    _, _, ref = reference
    model = kg.GoogLeNet(aux_logits=True, **kg.TORCHVISION_OPTIONS)
    assert model.count_params() == int(ref["params"])


def test_legacy_pth_format_loads_the_same(reference):
    _, folder, _ = reference
    legacy = folder / "legacy.pth"
    assert not legacy.read_bytes().startswith(b"PK")  # really the old (non-zip) format
    a = kg.GoogLeNet(weights=folder / "googlenet.pth", input_shape=(64, 64, 3))
    b = kg.GoogLeNet(weights=str(legacy), input_shape=(64, 64, 3))
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)


# ---- download and cache ----------------------------------------------------------


class _Server:
    """Serves a folder on 127.0.0.1 in a thread."""

    def __init__(self, folder):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def local_registry(reference, tmp_path, monkeypatch):
    """PRETRAINED_WEIGHTS["imagenet"] served from 127.0.0.1, the Keras cache in tmp_path."""
    path = reference[1] / "googlenet.pth"
    served = tmp_path / "served"
    served.mkdir()
    (served / "googlenet-test.pth").write_bytes(path.read_bytes())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    server = _Server(served)
    entry = dict(pretrained.PRETRAINED_WEIGHTS["imagenet"], url=f"{server.url}/googlenet-test.pth",
                 file_name="googlenet-test.pth", sha256_prefix=digest[:8],
                 cache_name="googlenet_test.npz")
    monkeypatch.setitem(pretrained.PRETRAINED_WEIGHTS, "imagenet", entry)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    yield entry, server, tmp_path / "keras_home" / "models"
    server.stop()


def test_download_converts_once_then_needs_no_network_nor_torch(
        local_registry, reference, monkeypatch):
    entry, server, cache = local_registry
    path = reference[1] / "googlenet.pth"
    direct = kg.GoogLeNet(weights=path, input_shape=(64, 64, 3))
    kg.GoogLeNet(weights="imagenet", input_shape=(64, 64, 3))
    assert sorted(os.listdir(cache)) == sorted([entry["file_name"], entry["cache_name"]])
    server.stop()
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    cached = kg.GoogLeNet(weights="imagenet", input_shape=(64, 64, 3))
    for x, y in zip(cached.get_weights(), direct.get_weights()):
        np.testing.assert_array_equal(x, y)


def test_tampered_download_is_refused_and_removed(local_registry, monkeypatch):
    entry, _, cache = local_registry
    monkeypatch.setitem(pretrained.PRETRAINED_WEIGHTS, "imagenet",
                        dict(entry, sha256_prefix="00000000"))
    with pytest.raises(ValueError, match="does not start with '00000000'.*refused"):
        kg.GoogLeNet(weights="imagenet")
    assert not cache.exists() or os.listdir(cache) == []


def test_no_network_names_the_url_and_the_path_alternative(local_registry):
    entry, server, cache = local_registry
    server.stop()
    with pytest.raises(ValueError) as e:
        kg.GoogLeNet(weights="imagenet")
    assert entry["url"] in str(e.value) and "weights=PATH" in str(e.value)
    assert not cache.exists() or os.listdir(cache) == []


# ---- bad input -------------------------------------------------------------------


def _save(state, path):
    torch.save(state, path)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda sd: sd.pop("inception4c.branch3.1.conv.weight"),
     "key 'inception4c.branch3.1.conv.weight' is missing"),
    (lambda sd: sd.__setitem__("fc2.weight", torch.zeros(3)), "unexpected key 'fc2.weight'"),
    (lambda sd: sd.__setitem__("conv3.conv.weight", torch.zeros(192, 64, 5, 5)),
     r"key 'conv3.conv.weight' has shape \(192, 64, 5, 5\)"),
])
def test_state_dict_that_is_not_a_googlenet(reference, tmp_path, change, message):
    state = dict(torch.load(reference[1] / "googlenet.pth", weights_only=True))
    change(state)
    with pytest.raises(ValueError, match=message):
        kg.GoogLeNet(weights=_save(state, tmp_path / "bad.pth"))


def test_truncated_and_non_state_dict_files(reference, tmp_path):
    path = reference[1] / "googlenet.pth"
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated, corrupt"):
        kg.GoogLeNet(weights=truncated)
    with pytest.raises(ValueError, match="not a state dict.*Received: list"):
        kg.GoogLeNet(weights=_save([torch.zeros(2)], tmp_path / "list.pth"))


def test_without_torch_the_error_names_the_extra(reference, monkeypatch):
    path = reference[1] / "googlenet.pth"
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r'keras-googlenet\[pretrained\]'):
        kg.GoogLeNet(weights=path)


@pytest.mark.parametrize("kwargs, message", [
    (dict(weights="imagenet", classes=10), "Received: classes=10"),
    (dict(weights="imagenet", stem="cifar"), "Received: stem='cifar'"),
    (dict(weights="imagenet", width=0.5), "Received: width=0.5"),
    (dict(weights="imagenet", batch_norm=False), "Received: batch_norm=False"),
    (dict(weights="imagenet", large_branch_kernel=5), "Received: large_branch_kernel=5"),
    (dict(weights="imagenet", blocks=[(8, 8, 8, 8, 8, 8)] * 9), "Received: blocks="),
    (dict(weights="imagenet21k"), "Received: weights='imagenet21k'"),
    (dict(weights="nowhere.pth"), "does not exist. Received: weights='nowhere.pth'"),
    (dict(ceil_mode=1), "`ceil_mode` must be one of"),
])
def test_arguments_pretrained_weights_cannot_fit(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        kg.GoogLeNet(**kwargs)


# ---- fine-tuning and class names ------------------------------------------------


def test_load_backbone_weights_leaves_the_heads(reference):
    path = reference[1] / "googlenet.pth"
    state = torch.load(path, weights_only=True)
    model = kg.GoogLeNet(classes=5, input_shape=(96, 96, 3), **kg.TORCHVISION_OPTIONS)
    heads = {h: [w.copy() for w in model.get_layer(h).get_weights()] for h in kg.HEADS}
    loaded = kg.load_backbone_weights(model, path)
    assert "conv1_7x7_s2" in loaded and not any(n.startswith(("aux", "main")) for n in loaded)
    np.testing.assert_array_equal(model.get_layer("conv1_7x7_s2").get_weights()[0],
                                  state["conv1.conv.weight"].numpy().transpose(2, 3, 1, 0))
    for head, before in heads.items():
        for a, b in zip(before, model.get_layer(head).get_weights()):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="large_branch_kernel=5"):
        kg.load_backbone_weights(kg.GoogLeNet(classes=5, input_shape=(96, 96, 3)), path)


def test_decode_predictions_and_class_names():
    names = kg.imagenet_class_names()
    assert len(names) == 1000 and names[1] == "goldfish"
    preds = np.zeros((2, 1000), "float32")
    preds[0, 1], preds[0, 8], preds[1, 999] = 0.9, 0.1, 1.0
    top = kg.decode_predictions(preds, top=2)
    assert top[0] == [("n01443537", "goldfish", pytest.approx(0.9)),
                      ("n01514859", "hen", pytest.approx(0.1))]
    # Keras's class index names (tests/test_applications_behaviour.py checks all of them).
    assert top[1][0][:2] == ("n15075141", "toilet_tissue")
    with pytest.raises(ValueError, match=r"Received: preds with shape \(2, 10\)"):
        kg.decode_predictions(np.zeros((2, 10)))


def test_export_labels_for_an_imagenet_model():
    from keras_googlenet.export.errors import ExportError
    from keras_googlenet.export.labels import resolve_labels

    assert resolve_labels("imagenet", 1000) == kg.imagenet_class_names()
    with pytest.raises(ExportError, match="Got 1000 labels for a model with 10 classes"):
        resolve_labels("imagenet", 10)
    with pytest.raises(ExportError, match="Received: 'imagenet21k'"):
        resolve_labels("imagenet21k", 1000)
