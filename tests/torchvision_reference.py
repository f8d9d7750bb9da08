"""torchvision's GoogLeNet as the reference for tests/test_pretrained.py.

Run in its own process, because importing torchvision after TensorFlow crashes
(segmentation fault with torch 2.14.1 and TensorFlow 2.21 on these machines):

    python -m tests.torchvision_reference IMAGES.npy OUT_DIR

IMAGES.npy holds uint8-range float32 NHWC photos of 227x227. Writes to OUT_DIR:
`googlenet.pth` (zip format), `legacy.pth` (PyTorch's legacy format) and
`reference.npz`: logits at 224 and 227, inception4e at both sizes, both
auxiliary heads and the pooled features at 224, `transform_input`'s output and
the parameter count.
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torchvision

MEAN = np.array([0.485, 0.456, 0.406], "float32")
STD = np.array([0.229, 0.224, 0.225], "float32")


def build():
    """torchvision's GoogLeNet with random weights that keep activations alive."""
    torch.manual_seed(0)
    model = torchvision.models.googlenet(
        weights=None, init_weights=True, transform_input=True, aux_logits=True)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            # torchvision's std-0.01 init makes every logit equal the fc bias.
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(m.weight, generator=g)
                if m.bias is not None:
                    m.bias.uniform_(-0.1, 0.1, generator=g)
            if isinstance(m, torch.nn.BatchNorm2d):  # statistics that matter
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def forward(model, images, taps=()):
    """Logits (eval mode) on raw 0-255 NHWC images, torchvision's convention, and taps."""
    x = torch.from_numpy(((images / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2).astype("float32"))
    seen = {}
    hooks = [getattr(model, t).register_forward_hook(
        lambda mod, inp, out, t=t: seen.__setitem__(t, out.detach())) for t in taps]
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    return logits.numpy(), seen


def main(images_path, out=None):
    if out is None:  # only the state dict: `python -m tests.torchvision_reference OUT_DIR`
        torch.save(build().state_dict(), Path(images_path) / "googlenet.pth")
        return
    out = Path(out)
    images = np.load(images_path)
    model = build()
    torch.save(model.state_dict(), out / "googlenet.pth")
    torch.save(model.state_dict(), out / "legacy.pth", _use_new_zipfile_serialization=False)
    ref = {}
    for side in (224, 227):
        logits, seen = forward(model, images[:, :side, :side],
                                  taps=("inception4a", "inception4d", "inception4e", "avgpool"))
        ref[f"logits_{side}"] = logits
        ref[f"inception4e_{side}"] = seen["inception4e"].numpy().transpose(0, 2, 3, 1)
        if side == 224:
            with torch.no_grad():
                ref["aux1"] = model.aux1(seen["inception4a"]).numpy()
                ref["aux2"] = model.aux2(seen["inception4d"]).numpy()
            ref["features"] = seen["avgpool"].numpy()[:, :, 0, 0]
    normalized = torch.from_numpy(
        ((images[:1, :8, :8] / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2).astype("float32"))
    ref["transform_input"] = model._transform_input(normalized).numpy().transpose(0, 2, 3, 1)
    ref["params"] = np.array(
        sum(p.numel() for p in model.parameters())
        + sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")))
    np.savez(out / "reference.npz", **ref)


if __name__ == "__main__":
    main(*sys.argv[1:])
