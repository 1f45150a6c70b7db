"""WideResNet-28-10 (Zagoruyko & Komodakis 2016, "Wide residual networks"), standard CIFAR version.

The "WRN" row of the duality paper's Table 6. Depth 28 gives (28 - 4) / 6 = 4 pre-activation basic blocks per
group; widen factor 10 gives widths 16 (stem) and 160/320/640 with strides 1/2/2; 1x1 shortcut convolutions
where the width changes; dropout between the two convolutions of a block (the paper's WRN-28-10-dropout uses
0.3; default 0 here, as in Rice et al.'s ``wideresnet.py``); final BN-ReLU, global average pooling, linear head.
Parameter names and initialisation follow the common PyTorch port (xternalz/WideResNet-pytorch) that Rice et al.
copy. 36,479,194 parameters for 3 input channels and 10 classes (the paper's Table 1 says 36.5M).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from samat.core.errors import ParameterError

from .normalize import Normalize


class WideBasicBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3 plus a shortcut (Zagoruyko & Komodakis 2016, Fig. 1(d))."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.convShortcut: nn.Conv2d | None = None  # noqa: N815 - the port's name, kept for checkpoints
        if in_planes != out_planes or stride != 1:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.convShortcut is None else self.convShortcut(out)
        out = F.relu(self.bn2(self.conv1(out)))
        out = F.dropout(out, p=self.dropout, training=self.training)
        return self.conv2(out) + shortcut


class WideResNetGroup(nn.Module):
    """``num_blocks`` blocks of the same width; only the first changes width or resolution."""

    def __init__(self, num_blocks: int, in_planes: int, out_planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.layer = nn.Sequential(*(
            WideBasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, dropout)
            for i in range(num_blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-depth-widen for small images; ``normalize`` is the first module (inputs in [0, 1])."""

    def __init__(self, depth: int = 28, widen: int = 10, num_classes: int = 10, in_channels: int = 3,
                 mean: tuple[float, ...] = (), std: tuple[float, ...] = (), dropout: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ParameterError("depth", depth, "6n + 4 with n >= 1 (28 for WRN-28-10)")
        if not 0.0 <= dropout < 1.0:
            raise ParameterError("dropout", dropout, "in [0, 1)")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = WideResNetGroup(n, widths[0], widths[1], 1, dropout)
        self.block2 = WideResNetGroup(n, widths[1], widths[2], 2, dropout)
        self.block3 = WideResNetGroup(n, widths[2], widths[3], 2, dropout)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():  # He-normal (fan-out) convolutions, unit BN, zero linear bias, as in the port
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.block3(self.block2(self.block1(out)))
        out = F.relu(self.bn1(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def wrn28_10(num_classes: int = 10, in_channels: int = 3, mean: tuple[float, ...] = (),
             std: tuple[float, ...] = ()) -> WideResNet:
    """WideResNet-28-10, the duality paper's "WRN" (Table 6), without dropout (as Rice et al. train it)."""
    return WideResNet(28, 10, num_classes, in_channels, mean, std)
