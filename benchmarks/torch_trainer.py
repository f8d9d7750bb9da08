"""One training step of the `training.recipe` recipe in PyTorch, for the benchmarks.

`TorchTrainer` trains the PyTorch reference (`benchmarks.torch_googlenet`) the
way `training.recipe` trains the Keras model: cross-entropy with label
smoothing 0.1 on each head, weighted 0.3 / 0.3 / 1.0, SGD with Nesterov
momentum 0.9 and weight decay on conv / dense kernels only, linear warm-up then
cosine learning-rate decay stepped every batch, and a running accuracy per head.
It is a benchmark reference, not a second training implementation of the
project. PyTorch is imported when a trainer is made.
"""

import math

from keras_googlenet.architecture import LOSS_WEIGHTS, MAIN_HEAD


class TorchTrainer:
    """One training step of the recipe in `training.recipe`, in PyTorch.

    Args:
        model: From `benchmarks.torch_googlenet.build_torch_googlenet`.
        steps: Total steps of the learning-rate schedule.
        lr, momentum, weight_decay, label_smoothing, aux_weight, warmup_steps:
            The recipe's settings (weight decay is PyTorch's coupled L2, 5e-4, the
            equivalent of the Keras recipe's decoupled 5e-3 with momentum 0.9).
        channels_last: Run in channels_last memory format.
        autocast_bf16: Run the forward pass and loss under
            `torch.autocast("cpu", dtype=torch.bfloat16)` (float32 weights and
            optimizer, bf16 convolutions and matmuls: Keras's `mixed_bfloat16`).
    """

    def __init__(self, model, *, steps=1000, lr=0.1, momentum=0.9, weight_decay=5e-4,
                 label_smoothing=0.1, aux_weight=LOSS_WEIGHTS["aux1"], warmup_steps=None,
                 channels_last=False, autocast_bf16=False):
        import torch

        self.torch = torch
        self.model = model
        self.channels_last = channels_last
        self.autocast_bf16 = autocast_bf16
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        decay, no_decay = [], []
        for module in self.model.modules():
            for name, p in module.named_parameters(recurse=False):
                is_kernel = name == "weight" and isinstance(
                    module, (torch.nn.Conv2d, torch.nn.Linear))
                (decay if is_kernel else no_decay).append(p)
        self.optimizer = torch.optim.SGD(
            [{"params": decay, "weight_decay": weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=lr, momentum=momentum, nesterov=True,
        )
        warmup = max(0, int(0.05 * steps) if warmup_steps is None else warmup_steps)

        def factor(step):
            if step < warmup:
                return (step + 1) / warmup
            t = min(1.0, (step - warmup) / max(1, steps - warmup))
            return 0.5 * (1 + math.cos(math.pi * t))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.loss = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.aux_weight = aux_weight
        self.correct = None
        self.seen = 0

    def prepare(self, images, labels):
        """uint8 NHWC numpy images, int labels -> tensors in the model's layout."""
        torch = self.torch
        x = torch.from_numpy(images).permute(0, 3, 1, 2)  # NCHW view of NHWC memory
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last
                         else torch.contiguous_format)
        return x, torch.from_numpy(labels).long()

    def step(self, x, y):
        """One optimizer step; returns the loss tensor."""
        self.model.train()
        with self.torch.autocast("cpu", dtype=self.torch.bfloat16, enabled=self.autocast_bf16):
            outputs = self.model(x)
            weights = [self.aux_weight] * (len(outputs) - 1) + [LOSS_WEIGHTS[MAIN_HEAD]]
            loss = sum(w * self.loss(o, y) for w, o in zip(weights, outputs))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        with self.torch.no_grad():  # running accuracy per head, as Keras's metrics
            correct = self.torch.stack([(o.argmax(1) == y).sum() for o in outputs])
            self.correct = correct if self.correct is None else self.correct + correct
            self.seen += len(y)
        return loss
