"""DeepLabv3 (Chen et al. 2017, "Rethinking atrous convolution for semantic image segmentation") with an atrous
ResNet-50 or MobileNetV2 backbone: the duality paper's segmentation models (D Section 5.2, Tables 8-9).

- **Backbones**, written here (torchvision is never imported) with torchvision's module layout, so that its
  ImageNet ``state_dict`` files load with a prefix (:func:`backbone_state`): ResNet-50 v1.5 (``conv1``, ``bn1``,
  ``layer1``..``layer4`` of bottlenecks with the stride on the 3x3 convolution) and MobileNetV2 (``features.0``..
  ``features.17``; the 1x1 convolution to 1280 channels and the classifier are dropped, as DeepLab does).
- **Output stride** 16 or 8: the last one or two strided stages keep their resolution and dilate their
  convolutions instead (torchvision's ``replace_stride_with_dilation``; for MobileNetV2 VainF/DeepLabV3Plus-
  Pytorch's rule), and the ASPP rates are (6, 12, 18) or (12, 24, 36).
- **Head**: ASPP (a 1x1 branch, three dilated 3x3 branches, image pooling; 256 channels, projection with dropout
  0.1 as in VainF's code) then 3x3 conv-BN-ReLU and a 1x1 classifier, upsampled bilinearly to the input size
  (torchvision's ``DeepLabHead`` layout). An optional auxiliary FCN head on the previous stage (torchvision's
  ``aux_classifier``): in training mode the model then returns ``(logits, aux_logits)``, in eval mode the logits.
- ``width`` scales every backbone width (the CPU default and the tests use small ones); ``normalize`` comes first,
  so attacks work on [0, 1] pixels.

With 21 classes: 39.6M parameters for ResNet-50 (42.0M with the auxiliary head, torchvision's count for its
deeplabv3_resnet50); 5.1M for MobileNetV2 (its 1.8M ``features.0-17`` and the head).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samat.core.errors import ParameterError

from .normalize import Normalize

ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}  # Chen et al. 2017, Section 3.3 (the rates double at stride 8)
MOBILENETV2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                      (6, 320, 1, 1))  # (expansion t, channels c, blocks n, stride s): Sandler et al. 2018, Table 2
MOBILENETV2_AUX_INDEX = 13  # features.13 ends the 96-channel stage (stride 16): the auxiliary head's input


@dataclass(frozen=True)
class DeepLabOptions:
    """How a DeepLabv3 is built (the ``segmentation`` table of a configuration holds these)."""

    output_stride: int = 16  # 16 or 8
    aux: bool = False  # an auxiliary FCN head on the previous stage
    width: float = 1.0  # backbone width multiplier
    aspp_channels: int = 256
    atrous_rates: tuple[int, ...] | None = None  # None: (6, 12, 18) at stride 16, (12, 24, 36) at stride 8
    dropout: float = 0.1  # in the ASPP projection

    def __post_init__(self) -> None:
        if isinstance(self.output_stride, bool) or self.output_stride not in ASPP_RATES:
            raise ParameterError("output_stride", self.output_stride, "8 or 16")
        if not isinstance(self.aux, bool):
            raise ParameterError("aux", self.aux, "true or false")
        if isinstance(self.width, bool) or not (isinstance(self.width, int | float) and 0 < self.width <= 4):
            raise ParameterError("width", self.width, "a number in (0, 4]")
        channels = self.aspp_channels
        if isinstance(channels, bool) or not (isinstance(channels, int) and channels >= 1):
            raise ParameterError("aspp_channels", self.aspp_channels, "an integer >= 1")
        if self.atrous_rates is not None and not (
                isinstance(self.atrous_rates, tuple | list) and len(self.atrous_rates) >= 1
                and all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in self.atrous_rates)):
            raise ParameterError("atrous_rates", self.atrous_rates, "a list of integers >= 1, e.g. [6, 12, 18]")
        if isinstance(self.dropout, bool) or not (isinstance(self.dropout, int | float) and 0 <= self.dropout < 1):
            raise ParameterError("dropout", self.dropout, "a number in [0, 1)")

    @property
    def rates(self) -> tuple[int, ...]:
        return tuple(self.atrous_rates) if self.atrous_rates is not None else ASPP_RATES[self.output_stride]


def _conv_bn_relu(cin: int, cout: int, kernel: int, *, stride: int = 1, dilation: int = 1, groups: int = 1,
                  relu: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Conv-BN-activation as torchvision's ``Conv2dNormActivation`` (indices 0, 1, 2)."""
    padding = (kernel - 1) // 2 * dilation
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), relu(inplace=True))


# --- ResNet-50 ------------------------------------------------------------------------------------------------

class Bottleneck(nn.Module):
    """1x1 - 3x3 (stride, dilation) - 1x1 with expansion 4 (He et al. 2016; torchvision's v1.5 layout)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet50Backbone(nn.Module):
    """ResNet-50's convolutional part; returns (layer4's features, layer3's for the auxiliary head)."""

    def __init__(self, in_channels: int, output_stride: int, width: float = 1.0) -> None:
        super().__init__()
        base = max(1, round(64 * width))
        self.conv1 = nn.Conv2d(in_channels, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        dilate = {16: (False, False, True), 8: (False, True, True)}[output_stride]  # layer2..layer4
        self.cin, self.dilation = base, 1
        self.layer1 = self._layer(base, 3, 1, False)
        self.layer2 = self._layer(base * 2, 4, 2, dilate[0])
        self.layer3 = self._layer(base * 4, 6, 2, dilate[1])
        self.layer4 = self._layer(base * 8, 3, 2, dilate[2])
        self.channels, self.aux_channels = base * 8 * Bottleneck.expansion, base * 4 * Bottleneck.expansion

    def _layer(self, planes: int, blocks: int, stride: int, dilate: bool) -> nn.Sequential:
        """torchvision's ``_make_layer``: a dilated stage keeps its resolution; its first block keeps the previous
        dilation, the others use the new one."""
        previous = self.dilation
        if dilate:
            self.dilation, stride = self.dilation * stride, 1
        downsample = None
        if stride != 1 or self.cin != planes * Bottleneck.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.cin, planes * Bottleneck.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self.cin, planes, stride, previous, downsample)]
        self.cin = planes * Bottleneck.expansion
        layers += [Bottleneck(self.cin, planes, 1, self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        aux = self.layer3(self.layer2(self.layer1(x)))
        return self.layer4(aux), aux


# --- MobileNetV2 ----------------------------------------------------------------------------------------------

def _make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding (to a multiple of 8, never more than 10% down)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise 3x3 (stride, dilation), project (1x1, linear); torchvision's ``conv`` layout."""

    def __init__(self, cin: int, cout: int, stride: int, dilation: int, expansion: int) -> None:
        super().__init__()
        hidden = int(round(cin * expansion))
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = [] if expansion == 1 else [_conv_bn_relu(cin, hidden, 1, relu=nn.ReLU6)]
        layers += [_conv_bn_relu(hidden, hidden, 3, stride=stride, dilation=dilation, groups=hidden, relu=nn.ReLU6),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2's ``features.0``..``features.17``; returns (the 320-channel features, features.13's)."""

    def __init__(self, in_channels: int, output_stride: int, width: float = 1.0) -> None:
        super().__init__()
        cin = _make_divisible(32 * width)
        features: list[nn.Module] = [_conv_bn_relu(in_channels, cin, 3, stride=2, relu=nn.ReLU6)]
        current, dilation = 2, 1
        for t, c, n, s in MOBILENETV2_STAGES:
            cout = _make_divisible(c * width)
            previous = dilation
            if current == output_stride:  # past the output stride: dilate instead of striding
                stride, dilation = 1, dilation * s
            else:
                stride, current = s, current * s
            for i in range(n):
                features.append(InvertedResidual(cin, cout, stride if i == 0 else 1, previous if i == 0 else dilation,
                                                 t))
                cin = cout
        self.features = nn.Sequential(*features)
        self.channels = cin
        self.aux_channels = _make_divisible(MOBILENETV2_STAGES[4][1] * width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        aux = self.features[:MOBILENETV2_AUX_INDEX + 1](x)
        return self.features[MOBILENETV2_AUX_INDEX + 1:](aux), aux


# --- A small backbone for CPU runs ---------------------------------------------------------------------------

SMALL_WIDTHS = (16, 32, 64, 64)  # channels of the small backbone's four 3x3 conv-BN-ReLU stages


class SmallBackbone(nn.Module):
    """Four 3x3 conv-BN-ReLU stages (16, 32, 64, 64 channels times ``width``): three of stride 2, and the last one
    of stride 2 at output stride 16 or dilated by 2 at output stride 8. Not a network of the papers: the project's
    CPU default for segmentation (as ``small_cnn`` is for classification). Returns (the last stage's features,
    the third's for the auxiliary head)."""

    def __init__(self, in_channels: int, output_stride: int, width: float = 1.0) -> None:
        super().__init__()
        c = [max(1, round(w * width)) for w in SMALL_WIDTHS]
        self.stages = nn.Sequential(
            _conv_bn_relu(in_channels, c[0], 3, stride=2), _conv_bn_relu(c[0], c[1], 3, stride=2),
            _conv_bn_relu(c[1], c[2], 3, stride=2),
            _conv_bn_relu(c[2], c[3], 3, stride=2) if output_stride == 16 else _conv_bn_relu(c[2], c[3], 3, dilation=2))
        self.channels, self.aux_channels = c[3], c[2]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        aux = self.stages[:3](x)
        return self.stages[3](aux), aux


# --- The head and the model -----------------------------------------------------------------------------------

class ASPPPooling(nn.Sequential):
    """Image-level features: global average pool, 1x1 conv-BN-ReLU, broadcast back to the feature map's size."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(super().forward(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (Chen et al. 2017, Section 3.3): parallel 1x1, dilated 3x3 and image-pooling
    branches, concatenated and projected."""

    def __init__(self, cin: int, rates: Sequence[int], cout: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        branches = [_conv_bn_relu(cin, cout, 1)] + [_conv_bn_relu(cin, cout, 3, dilation=r) for r in rates]
        self.convs = nn.ModuleList([*branches, ASPPPooling(cin, cout)])
        self.project = nn.Sequential(nn.Conv2d(len(self.convs) * cout, cout, 1, bias=False), nn.BatchNorm2d(cout),
                                     nn.ReLU(inplace=True), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


def deeplab_head(cin: int, num_classes: int, options: DeepLabOptions) -> nn.Sequential:
    """ASPP, 3x3 conv-BN-ReLU, 1x1 classifier (torchvision's ``DeepLabHead``)."""
    c = options.aspp_channels
    return nn.Sequential(ASPP(cin, options.rates, c, options.dropout), nn.Conv2d(c, c, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, num_classes, 1))


def fcn_head(cin: int, num_classes: int) -> nn.Sequential:
    """The auxiliary head: 3x3 conv-BN-ReLU to cin/4 channels, dropout 0.1, 1x1 classifier (torchvision's FCNHead)."""
    hidden = max(1, cin // 4)
    return nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden),
                         nn.ReLU(inplace=True), nn.Dropout(0.1), nn.Conv2d(hidden, num_classes, 1))


class DeepLabV3(nn.Module):
    """Normalize, backbone, DeepLab head, bilinear upsampling to the input's size: logits (N, K, H, W)."""

    def __init__(self, backbone: nn.Module, num_classes: int, options: DeepLabOptions,
                 mean: tuple[float, ...] = (), std: tuple[float, ...] = ()) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.backbone = backbone
        self.classifier = deeplab_head(backbone.channels, num_classes, options)
        self.aux_classifier = fcn_head(backbone.aux_channels, num_classes) if options.aux else None
        _initialize(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        size = x.shape[-2:]
        features, aux_features = self.backbone(self.normalize(x))
        logits = F.interpolate(self.classifier(features), size=size, mode="bilinear", align_corners=False)
        if self.aux_classifier is None or not self.training:
            return logits
        aux = F.interpolate(self.aux_classifier(aux_features), size=size, mode="bilinear", align_corners=False)
        return logits, aux


def _initialize(model: nn.Module) -> None:
    """He-normal convolutions (fan out, as torchvision's ResNet and MobileNetV2), BatchNorm 1 and 0, zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def deeplabv3_resnet50(num_classes: int, in_channels: int = 3, mean=(), std=(),
                       options: DeepLabOptions = DeepLabOptions()) -> DeepLabV3:
    return DeepLabV3(ResNet50Backbone(in_channels, options.output_stride, options.width), num_classes, options,
                     mean, std)


def deeplabv3_mobilenetv2(num_classes: int, in_channels: int = 3, mean=(), std=(),
                          options: DeepLabOptions = DeepLabOptions()) -> DeepLabV3:
    return DeepLabV3(MobileNetV2Backbone(in_channels, options.output_stride, options.width), num_classes, options,
                     mean, std)


def deeplabv3_small(num_classes: int, in_channels: int = 3, mean=(), std=(),
                    options: DeepLabOptions = DeepLabOptions()) -> DeepLabV3:
    return DeepLabV3(SmallBackbone(in_channels, options.output_stride, options.width), num_classes, options, mean,
                     std)


# --- ImageNet weights -----------------------------------------------------------------------------------------

def backbone_state(model: DeepLabV3, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A classification network's ``state_dict`` in torchvision's layout (``conv1.weight``, ``features.3.conv.1.0.
    weight``, ...; a ``module.`` prefix from DataParallel is dropped) as the DeepLab's backbone entries
    (``backbone.``...). Entries the backbone does not have (the classifier ``fc``/``classifier``, MobileNetV2's
    ``features.18``) are left out; keys already under ``backbone.`` are kept as they are."""
    own = {k for k in model.state_dict() if k.startswith("backbone.")}
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        target = key if key.startswith("backbone.") else f"backbone.{key}"
        if target in own:
            out[target] = value
    return out


def load_backbone(model: DeepLabV3, state: Mapping[str, torch.Tensor], where: str) -> int:
    """Copy ImageNet weights into the backbone (see :func:`backbone_state`); returns the number of tensors
    loaded. A file that misses a backbone tensor or holds one of another shape is a one-line ParameterError."""
    mapped = backbone_state(model, state)
    own = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    missing = sorted(set(own) - set(mapped))
    if missing:
        raise ParameterError("backbone_weights", where, f"a state_dict with every backbone tensor in torchvision's "
                             f"layout ({len(missing)} missing, e.g. {missing[0].removeprefix('backbone.')})")
    for key, value in mapped.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ParameterError("backbone_weights", where, f"weights of this backbone's shapes ("
                                 f"{key.removeprefix('backbone.')} is {tuple(value.shape)}, the model's "
                                 f"{tuple(own[key].shape)}: another width or input channels?)")
    model.load_state_dict(mapped, strict=False)
    return len(mapped)
