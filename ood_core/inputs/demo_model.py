"""The demo classifier: a small 4-block ResNet for 32×32 grayscale digits, trained once with a fixed seed.

The weights OOD Lab ships (``demo_weights/demo_resnet.pt`` with its sha256 in ``demo_resnet.json``) were made by
``python -m ood_core.inputs.demo_model``; the app trains the same way only if that file is missing or altered.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import demo_data
from .weights import SHIPPED_DEMO_WEIGHTS, save_once

SEED = 0
EPOCHS = 12
BATCH_SIZE = 64
WIDTHS = (16, 32, 64, 64)
STRIDES = (1, 2, 2, 1)
# Mean and standard deviation of the demo digits' training pixels in [0, 1].
PIXEL_MEAN, PIXEL_STD = 0.306, 0.324


class BasicBlock(nn.Module):
    """conv-bn-relu-conv-bn plus (projected) shortcut, then ReLU; ReLUs are not in-place so hooks see clean tensors."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class DemoResNet(nn.Module):
    """stem → layer1..layer4 (one BasicBlock each; 32, 32, 16, 8, 8 px) → global average pool → fc."""

    def __init__(self, num_classes: int = 10, widths=WIDTHS, strides=STRIDES):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        cin = widths[0]
        for i, (cout, stride) in enumerate(zip(widths, strides), start=1):
            self.add_module(f"layer{i}", nn.Sequential(BasicBlock(cin, cout, stride)))
            cin = cout
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 [N,32,32] → normalized float [N,1,32,32] (the same as the demo model's torchvision transform)."""
    return (
        torch.as_tensor(images, dtype=torch.float32)[:, None] / 255 - PIXEL_MEAN
    ) / PIXEL_STD


def _shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to 2 px (zero padding), one draw per batch."""
    dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=generator))
    padded = F.pad(x, (2, 2, 2, 2), value=float(x.min()))
    return padded[..., 2 + dy : 2 + dy + x.shape[-2], 2 + dx : 2 + dx + x.shape[-1]]


def train_demo_model(
    progress: Callable[[int, int], None] | None = None,
) -> tuple[DemoResNet, dict]:
    """Train the demo ResNet on digits:train with a fixed seed; return the model and a report (accuracy, seconds)."""
    start = time.perf_counter()
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    train_x, train_y = demo_data.digits("train")
    test_x, test_y = demo_data.digits("test")
    x, y = to_input(train_x), torch.as_tensor(train_y)
    model = DemoResNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    steps_per_epoch = -(-len(y) // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, 1e-2, total_steps=EPOCHS * steps_per_epoch
    )
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(y), generator=generator)
        for batch in order.split(BATCH_SIZE):
            loss = F.cross_entropy(model(_shift(x[batch], generator)), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        if progress:
            progress(epoch + 1, EPOCHS)
    model.eval()
    with torch.inference_mode():
        accuracy = float((model(to_input(test_x)).argmax(1).numpy() == test_y).mean())
    report = {
        "test_accuracy": accuracy,
        "train_seconds": time.perf_counter() - start,
        "epochs": EPOCHS,
        "seed": SEED,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    return model, report


def main() -> None:
    """Retrain the shipped demo weights (replaces ``demo_weights/demo_resnet.pt`` and its report)."""

    def train() -> tuple[dict, dict]:
        model, report = train_demo_model(
            lambda epoch, total: print(f"epoch {epoch}/{total}")
        )
        return model.state_dict(), report

    SHIPPED_DEMO_WEIGHTS.unlink(missing_ok=True)
    save_once(SHIPPED_DEMO_WEIGHTS, train, lambda path: False)
    print(f"wrote {SHIPPED_DEMO_WEIGHTS}")


if __name__ == "__main__":
    main()
