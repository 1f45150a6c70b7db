"""PreActResNet-18 (He et al. 2016, "Identity mappings in deep residual networks"), CIFAR variant.

The backbone both papers train ("PRN-18": duality paper Section 5.1.1 and Table 6; SAM-alone paper Section 4),
as written in Rice et al.'s robust_overfitting ``preactresnet.py``: a 3x3 stem with 64 channels and no max-pool,
pre-activation basic blocks [2, 2, 2, 2] with widths 64/128/256/512 and strides 1/2/2/2, a 1x1 convolution
shortcut where the shape changes, a final BN-ReLU, global average pooling and a linear head. The pooling is
adaptive (Rice et al. use a fixed 4x4 pool), so 28x28 and 64x64 inputs work too; on 32x32 inputs the two agree.
Parameter names follow Rice et al. (``conv1``, ``layer1``..``layer4``, ``bn``, ``linear``), plus ``normalize``.
11,172,170 parameters for 3 input channels and 10 classes (the "11.2M" usually quoted).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .normalize import Normalize


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus a shortcut (He et al. 2016, Fig. 4(e))."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # The projection shortcut sees the pre-activated input, the identity shortcut the raw one (Rice et al.).
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreActResNet-18 for small images; ``normalize`` is the first module (inputs in [0, 1])."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3,
                 mean: tuple[float, ...] = (), std: tuple[float, ...] = ()) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        in_planes, layers = 64, []
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(PreActBlock(in_planes, planes, stride), PreActBlock(planes, planes, 1)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)
