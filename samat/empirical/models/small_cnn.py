"""A small CNN for CPU runs: the project's Fashion-MNIST default (not an architecture from the papers).

conv(16)-BN-ReLU-maxpool-conv(32)-BN-ReLU-maxpool-conv(64)-BN-ReLU-maxpool-flatten-linear(128)-ReLU-
linear(classes): about 2.4M multiply-adds per 28x28 image, so that SGD, SAM and 5-step PGD training of it
fit in minutes on two CPU cores. The BatchNorm layers are deliberate: SAM's second forward pass must leave
their running statistics unchanged (davda54/sam's ``disable_running_stats``), and the trainer tests that on
this model. About 0.10M parameters on 28x28x1 inputs, 0.13M on 32x32x3.
"""

from __future__ import annotations

import torch
from torch import nn

from .normalize import Normalize


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Three 3x3 conv-BN-ReLU-maxpool stages, a 128-unit hidden layer; ``normalize`` comes first."""

    def __init__(self, image_size: tuple[int, int] = (28, 28), num_classes: int = 10, in_channels: int = 1,
                 mean: tuple[float, ...] = (), std: tuple[float, ...] = ()) -> None:
        super().__init__()
        h, w = image_size
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, 16), nn.MaxPool2d(2),
            *_conv_bn_relu(16, 32), nn.MaxPool2d(2),
            *_conv_bn_relu(32, 64), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * (h // 8) * (w // 8), 128), nn.ReLU(inplace=True), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))
