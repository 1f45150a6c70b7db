"""DeepLabv3: output shapes at several input sizes, output strides, the auxiliary head, parameter counts against
torchvision's published ones, ImageNet weights in torchvision's layout loaded into the backbone; and what shapes
and counts do not show: each option's range, the modules of torchvision's heads, every block's stride and dilation
(torchvision's rule for ResNet-50, VainF's for MobileNetV2), the residual connections, the image-pooling branch,
bilinear upsampling with half-pixel centres, He initialization, MobileNet's channel rounding."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from samat.core.errors import ParameterError
from samat.empirical.models import DeepLabOptions, Normalize, build_model, count_parameters, load_backbone
from samat.empirical.models.deeplab import (
    ASPPPooling,
    Bottleneck,
    InvertedResidual,
    MobileNetV2Backbone,
    SmallBackbone,
    _make_divisible,
    backbone_state,
    deeplabv3_mobilenetv2,
    deeplabv3_resnet50,
    deeplabv3_small,
    fcn_head,
)
from samat.empirical.training.segmentation import SegmentationSpec, load_backbone_weights

TINY = {"width": 0.25, "aspp_channels": 8}
SEGMENTERS = ("deeplabv3_resnet50", "deeplabv3_mobilenetv2", "deeplabv3_small")


@pytest.mark.parametrize("arch", SEGMENTERS)
@pytest.mark.parametrize(("size", "stride"), [((33, 47), 16), ((64, 64), 8), ((17, 29), 8)])
def test_logits_have_the_input_size_at_every_output_stride(arch, size, stride):
    model = build_model(arch, input_shape=(3, *size), num_classes=5, options=TINY | {"output_stride": stride})
    x = torch.rand(2, 3, *size)
    assert model(x).shape == (2, 5, *size)
    features, _ = model.backbone(model.normalize(x))
    assert features.shape[-2:] == tuple(-(-s // stride) for s in size)  # ceil(H / output stride)
    model.eval()
    assert model(x).shape == (2, 5, *size)


@pytest.mark.parametrize("arch", SEGMENTERS)
def test_the_auxiliary_head_adds_logits_in_training_only(arch):
    model = build_model(arch, input_shape=(1, 32, 40), num_classes=4, options=TINY | {"aux": True})
    out = model(torch.rand(2, 1, 32, 40))
    assert isinstance(out, tuple) and [o.shape for o in out] == [(2, 4, 32, 40)] * 2
    assert model.eval()(torch.rand(2, 1, 32, 40)).shape == (2, 4, 32, 40)


def test_parameter_counts_are_torchvisions():
    """torchvision's deeplabv3_resnet50 (21 classes, auxiliary head) has 42,004,074 parameters; its mobilenet_v2 has
    3,504,872, of which DeepLab drops the 1280-channel convolution (320 * 1280 + 2 * 1280) and the classifier
    (1280 * 1000 + 1000)."""
    resnet = build_model("deeplabv3_resnet50", input_shape=(3, 64, 64), num_classes=21, options={"aux": True})
    assert count_parameters(resnet) == 42_004_074
    mobile = build_model("deeplabv3_mobilenetv2", input_shape=(3, 64, 64), num_classes=21)
    assert count_parameters(mobile.backbone) == 3_504_872 - (320 * 1280 + 2 * 1280) - (1280 * 1000 + 1000)


MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def _tiny(arch: str, size=(24, 20)):
    torch.manual_seed(0)
    return build_model(arch, input_shape=(3, *size), num_classes=6, mean=MEAN, std=STD, options=TINY)


@pytest.mark.parametrize("arch", SEGMENTERS)
def test_normalization_is_the_first_module_travels_in_the_state_dict_and_round_trips(arch):
    model = _tiny(arch).eval()
    assert isinstance(next(iter(model.children())), Normalize)
    bare = copy.deepcopy(model)
    bare.normalize = Normalize()
    x = torch.rand(2, 3, 24, 20)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), bare((x - mean) / std), rtol=0, atol=0)
        torch.manual_seed(1)
        fresh = build_model(arch, input_shape=(3, 24, 20), num_classes=6, mean=MEAN, std=STD, options=TINY).eval()
        fresh.load_state_dict(model.state_dict(), strict=True)
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("arch", SEGMENTERS)
def test_channels_last_bf16_gradients_and_one_graph(arch):
    model, x = _tiny(arch).eval(), torch.rand(2, 3, 24, 20)
    with torch.no_grad():
        expected = model(x)
        last = copy.deepcopy(model).to(memory_format=torch.channels_last)
        got = last(x.contiguous(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    # float32 sums in another order (channels last), and bfloat16's 8 significant bits, as for the classifiers
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max() + 1e-6
    assert low.dtype == torch.bfloat16 and (low.float() - expected).abs().max() <= 0.05 * expected.abs().max()
    x.requires_grad_(True)
    F.cross_entropy(model.train()(x), torch.randint(0, 6, (2, 24, 20))).backward()
    assert (x.grad.flatten(1).norm(dim=1) > 0).all()  # every image gets an attack direction
    torch._dynamo.reset()
    compiled = torch.compile(model.eval(), backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x.detach()), model(x.detach()))


def test_classifiers_take_no_options_and_bad_options_name_themselves():
    with pytest.raises(ParameterError, match="options"):
        build_model("small_cnn", input_shape=(1, 28, 28), num_classes=10, options={"width": 2})
    with pytest.raises(ParameterError, match="output_stride"):
        DeepLabOptions(output_stride=4)
    with pytest.raises(ParameterError, match="segmentation.atrous_rates"):
        SegmentationSpec.from_table({"atrous_rates": [0, 1]})
    with pytest.raises(ParameterError, match="segmentation.crop"):
        SegmentationSpec.from_table({"crop": [513]})


# --- ImageNet weights in torchvision's layout -------------------------------------------------------------------

def _bn(prefix: str, channels: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": torch.rand(channels, generator=g), f"{prefix}.bias": torch.randn(channels, generator=g),
            f"{prefix}.running_mean": torch.randn(channels, generator=g),
            f"{prefix}.running_var": torch.rand(channels, generator=g) + 0.5,
            f"{prefix}.num_batches_tracked": torch.tensor(7)}


def torchvision_mobilenet_v2(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state_dict with torchvision's mobilenet_v2 names and shapes (width 1, 1000 classes), written from its
    architecture table (Sandler et al. 2018, Table 2), not from samat's module."""
    g = torch.Generator().manual_seed(seed)
    state = {"features.0.0.weight": torch.randn(32, 3, 3, 3, generator=g), **_bn("features.0.1", 32, g)}
    cin, index = 32, 1
    for t, c, n, _ in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)):
        for _ in range(n):
            hidden, p, j = cin * t, f"features.{index}.conv", 0
            if t != 1:
                state |= {f"{p}.0.0.weight": torch.randn(hidden, cin, 1, 1, generator=g), **_bn(f"{p}.0.1", hidden, g)}
                j = 1
            state |= {f"{p}.{j}.0.weight": torch.randn(hidden, 1, 3, 3, generator=g), **_bn(f"{p}.{j}.1", hidden, g),
                      f"{p}.{j + 1}.weight": torch.randn(c, hidden, 1, 1, generator=g), **_bn(f"{p}.{j + 2}", c, g)}
            cin, index = c, index + 1
    state |= {"features.18.0.weight": torch.randn(1280, 320, 1, 1, generator=g), **_bn("features.18.1", 1280, g),
              "classifier.1.weight": torch.randn(1000, 1280, generator=g), "classifier.1.bias": torch.zeros(1000)}
    return state


def torchvision_resnet50(base: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state_dict with torchvision's resnet50 names (base width ``base``; 64 is torchvision's), from the
    architecture (He et al. 2016, Table 1: bottlenecks [3, 4, 6, 3], expansion 4, projection on each stage's first
    block)."""
    g = torch.Generator().manual_seed(seed)
    state = {"conv1.weight": torch.randn(base, 3, 7, 7, generator=g), **_bn("bn1", base, g)}
    cin = base
    for layer, (blocks, planes) in enumerate(zip((3, 4, 6, 3), (base, 2 * base, 4 * base, 8 * base), strict=True), 1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            state |= {f"{p}.conv1.weight": torch.randn(planes, cin, 1, 1, generator=g), **_bn(f"{p}.bn1", planes, g),
                      f"{p}.conv2.weight": torch.randn(planes, planes, 3, 3, generator=g), **_bn(f"{p}.bn2", planes, g),
                      f"{p}.conv3.weight": torch.randn(4 * planes, planes, 1, 1, generator=g),
                      **_bn(f"{p}.bn3", 4 * planes, g)}
            if b == 0:
                state |= {f"{p}.downsample.0.weight": torch.randn(4 * planes, cin, 1, 1, generator=g),
                          **_bn(f"{p}.downsample.1", 4 * planes, g)}
            cin = 4 * planes
    return state | {"fc.weight": torch.randn(1000, cin, generator=g), "fc.bias": torch.zeros(1000)}


@pytest.mark.parametrize(("arch", "width", "make"), [
    ("deeplabv3_mobilenetv2", 1.0, torchvision_mobilenet_v2),
    ("deeplabv3_resnet50", 0.125, lambda: {f"module.{k}": v for k, v in torchvision_resnet50(base=8).items()}),
])
def test_imagenet_weights_in_torchvisions_layout_fill_the_backbone(tmp_path, arch, width, make):
    state = make()
    path = tmp_path / "imagenet.pth"
    torch.save(state, path)
    model = build_model(arch, input_shape=(3, 32, 32), num_classes=21, options={"width": width})
    head_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    load_backbone_weights(model, SegmentationSpec.from_table({"backbone_weights": str(path), "width": width}))
    own = model.state_dict()
    backbone = [k for k in own if k.startswith("backbone.")]
    source = {k.removeprefix("module."): v for k, v in state.items()}
    assert backbone and all(torch.equal(own[k], source[k.removeprefix("backbone.")]) for k in backbone)
    assert all(torch.equal(own[k], v) for k, v in head_before.items())  # the head keeps its initialization
    unused = set(source) - {k.removeprefix("backbone.") for k in backbone}
    assert unused == {k for k in source if k.startswith(("classifier.", "features.18.", "fc."))}


def test_weights_of_another_shape_or_missing_tensors_are_one_line_errors():
    state = torchvision_mobilenet_v2()
    model = build_model("deeplabv3_mobilenetv2", input_shape=(3, 32, 32), num_classes=21, options={"width": 0.5})
    with pytest.raises(ParameterError, match=r"backbone_weights=w.pth .*features.0.0.weight is \(32, 3, 3, 3\)"):
        load_backbone(model, state, "w.pth")
    full = build_model("deeplabv3_mobilenetv2", input_shape=(3, 32, 32), num_classes=21)
    with pytest.raises(ParameterError, match="missing, e.g. features.17"):
        load_backbone(full, {k: v for k, v in state.items() if not k.startswith("features.17.")}, "w.pth")
    with pytest.raises(ParameterError, match="segmentation.backbone_weights"):
        SegmentationSpec.from_table({"backbone_weights": "/no/such/file.pth"})


# --- what the shapes and counts above do not show -----------------------------------------------------------------

@pytest.mark.parametrize(("field", "value", "valid"), [
    ("output_stride", 4, "8 or 16"), ("output_stride", True, "8 or 16"),
    ("aux", 1, "true or false"), ("aux", "yes", "true or false"),
    ("width", 0, "a number in (0, 4]"), ("width", 4.5, "a number in (0, 4]"), ("width", True, "a number in (0, 4]"),
    ("width", "1", "a number in (0, 4]"),
    ("aspp_channels", 0, "an integer >= 1"), ("aspp_channels", 2.0, "an integer >= 1"),
    ("aspp_channels", True, "an integer >= 1"),
    ("atrous_rates", (), "a list of integers >= 1, e.g. [6, 12, 18]"),
    ("atrous_rates", (6, 0), "a list of integers >= 1, e.g. [6, 12, 18]"),
    ("atrous_rates", (True,), "a list of integers >= 1, e.g. [6, 12, 18]"),
    ("atrous_rates", (1.5,), "a list of integers >= 1, e.g. [6, 12, 18]"),
    ("atrous_rates", "6", "a list of integers >= 1, e.g. [6, 12, 18]"),
    ("dropout", -0.1, "a number in [0, 1)"), ("dropout", 1, "a number in [0, 1)"),
    ("dropout", True, "a number in [0, 1)"), ("dropout", "0.1", "a number in [0, 1)"),
])
def test_each_option_out_of_its_range_is_named_with_the_range(field, value, valid):
    with pytest.raises(ParameterError) as raised:
        DeepLabOptions(**{field: value})
    assert raised.value.name == field and raised.value.value == value
    assert str(raised.value).startswith(f"{field}=") and str(raised.value).endswith(f" is invalid: {field} must be "
                                                                                     f"{valid}")


def test_each_option_at_the_ends_of_its_range_is_taken():
    for options in ({"output_stride": 8}, {"output_stride": 16, "aux": True}, {"width": 4}, {"width": 0.01},
                    {"aspp_channels": 1}, {"atrous_rates": [1]}, {"atrous_rates": (1, 2, 3, 4)}, {"dropout": 0},
                    {"dropout": 0.99}):
        DeepLabOptions(**options)
    assert DeepLabOptions(output_stride=8).rates == (12, 24, 36) and DeepLabOptions(atrous_rates=[2, 3]).rates == (2, 3)


def _types(modules) -> list[str]:
    return [type(m).__name__ for m in modules]


def test_the_heads_are_torchvisions_modules():
    """DeepLabHead (ASPP, 3x3 conv-BN-ReLU, 1x1 classifier with a bias), ASPP (a 1x1 branch, one 3x3 branch per
    rate dilated by it, image pooling; a projection with the option's dropout), FCNHead (3x3 conv-BN-ReLU to a
    quarter of the channels, dropout 0.1, 1x1 classifier); every 3x3 convolution pads by its dilation (the size
    is kept) and has no bias before its BatchNorm."""
    options = {"width": 0.5, "aspp_channels": 8, "atrous_rates": [2, 3], "dropout": 0.3, "aux": True}
    model = build_model("deeplabv3_small", input_shape=(3, 32, 32), num_classes=5, options=options)
    head = model.classifier
    assert _types(head) == ["ASPP", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d"]
    assert head[4].kernel_size == (1, 1) and head[4].bias is not None and head[4].out_channels == 5
    aspp = head[0]
    assert _types(aspp.convs) == ["Sequential", "Sequential", "Sequential", "ASPPPooling"]
    assert [c[0].kernel_size for c in aspp.convs[:3]] == [(1, 1), (3, 3), (3, 3)]
    assert [c[0].dilation for c in aspp.convs[1:3]] == [(2, 2), (3, 3)]
    assert _types(aspp.convs[-1]) == ["AdaptiveAvgPool2d", "Conv2d", "BatchNorm2d", "ReLU"]
    assert aspp.convs[-1][0].output_size == 1
    assert _types(aspp.project) == ["Conv2d", "BatchNorm2d", "ReLU", "Dropout"] and aspp.project[3].p == 0.3
    assert aspp.project[0].in_channels == 4 * 8
    aux = model.aux_classifier
    assert _types(aux) == ["Conv2d", "BatchNorm2d", "ReLU", "Dropout", "Conv2d"] and aux[3].p == 0.1
    assert aux[0].out_channels == aux[0].in_channels // 4 and aux[4].out_channels == 5
    assert all(_types(stage) == ["Conv2d", "BatchNorm2d", "ReLU"] for stage in model.backbone.stages)
    for arch in SEGMENTERS:
        net = build_model(arch, input_shape=(3, 32, 32), num_classes=5, options={"width": 0.25, "aspp_channels": 8,
                                                                               "aux": True})
        for m in net.modules():
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                assert m.padding == m.dilation and (m.bias is None) == (m is not net.classifier[4]), m
    mobile = build_model("deeplabv3_mobilenetv2", input_shape=(3, 32, 32), num_classes=5, options={"width": 0.25})
    assert {type(m) for m in mobile.backbone.modules() if isinstance(m, nn.ReLU | nn.ReLU6)} == {nn.ReLU6}


def _blocks(backbone) -> list[list[tuple[int, int]]]:
    """ResNet-50: (stride, dilation) of each bottleneck's 3x3 convolution, per stage."""
    return [[(b.conv2.stride[0], b.conv2.dilation[0]) for b in layer]
            for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4)]


# torchvision's _make_layer with replace_stride_with_dilation: a dilated stage's first block keeps the previous
# dilation, the others take the new one (previous x 2)
RESNET_BLOCKS = {
    16: [[(1, 1)] * 3, [(2, 1)] + [(1, 1)] * 3, [(2, 1)] + [(1, 1)] * 5, [(1, 1), (1, 2), (1, 2)]],
    8: [[(1, 1)] * 3, [(2, 1)] + [(1, 1)] * 3, [(1, 1)] + [(1, 2)] * 5, [(1, 2), (1, 4), (1, 4)]],
}
# VainF/DeepLabV3Plus-Pytorch's MobileNetV2: past the output stride a stage strides 1 and multiplies the dilation
# by its stride; its first block keeps the previous dilation. (stride, dilation) of each block's depthwise conv.
MOBILENET_BLOCKS = {
    16: [(1, 1), (2, 1), (1, 1), (2, 1), (1, 1), (1, 1), (2, 1), (1, 1), (1, 1), (1, 1), (1, 1), (1, 1), (1, 1),
         (1, 1), (1, 2), (1, 2), (1, 2)],
    8: [(1, 1), (2, 1), (1, 1), (2, 1), (1, 1), (1, 1), (1, 1), (1, 2), (1, 2), (1, 2), (1, 2), (1, 2), (1, 2),
        (1, 2), (1, 4), (1, 4), (1, 4)],
}


@pytest.mark.parametrize("stride", [16, 8])
def test_every_block_strides_and_dilates_as_torchvisions_and_vainfs(stride):
    resnet = build_model("deeplabv3_resnet50", input_shape=(3, 32, 32), num_classes=3,
                         options={"width": 1 / 64, "output_stride": stride}).backbone
    assert _blocks(resnet) == RESNET_BLOCKS[stride]
    assert [layer[0].downsample[0].stride[0] for layer in (resnet.layer1, resnet.layer2, resnet.layer3,
                                                           resnet.layer4)] == [1, 2, 2 if stride == 16 else 1, 1]
    assert resnet.conv1.out_channels == 1 and resnet.channels == 32  # the width scales every stage, at least 1
    mobile = build_model("deeplabv3_mobilenetv2", input_shape=(3, 32, 32), num_classes=3,
                         options={"width": 0.25, "output_stride": stride}).backbone
    depthwise = [next(m for m in block.conv.modules() if isinstance(m, nn.Conv2d) and m.groups > 1)
                 for block in mobile.features[1:]]
    assert [(c.stride[0], c.dilation[0]) for c in depthwise] == MOBILENET_BLOCKS[stride]
    assert mobile.features[0][0].stride == (2, 2)
    small = build_model("deeplabv3_small", input_shape=(3, 32, 32), num_classes=3,
                        options={"width": 0.5, "output_stride": stride}).backbone
    assert [(s[0].stride[0], s[0].dilation[0]) for s in small.stages] == [(2, 1)] * 3 + [
        (2, 1) if stride == 16 else (1, 2)]
    assert [s[0].out_channels for s in small.stages] == [8, 16, 32, 32] and (small.channels, small.aux_channels) == (
        32, 32)
    assert small.stages[3][0].in_channels == 32


def _zero_last_bn(block: nn.Module, bn: nn.BatchNorm2d) -> nn.Module:
    with torch.no_grad():
        bn.weight.zero_(), bn.bias.zero_()
    return block.eval()


def test_the_residual_blocks_add_their_input():
    """With its last BatchNorm zeroed, a block without a projection passes its input through: a bottleneck (after
    its final ReLU, on a non-negative input) and an inverted residual of stride 1 with as many channels out as in
    (linear: no activation after the sum). One that strides or changes the width has no shortcut."""
    x = torch.rand(2, 16, 6, 6)
    bottleneck = Bottleneck(16, 4)
    with torch.no_grad():
        torch.testing.assert_close(_zero_last_bn(bottleneck, bottleneck.bn3)(x), x, rtol=0, atol=0)
        block = InvertedResidual(16, 16, 1, 1, 6)
        torch.testing.assert_close(_zero_last_bn(block, block.conv[-1])(x - 0.5), x - 0.5, rtol=0, atol=0)
        for strided in (InvertedResidual(16, 16, 2, 1, 6), InvertedResidual(16, 24, 1, 1, 6)):
            out = _zero_last_bn(strided, strided.conv[-1])(x)
            assert not strided.use_res_connect and float(out.abs().max()) == 0.0
    assert InvertedResidual(16, 16, 1, 2, 1).use_res_connect and len(InvertedResidual(16, 16, 1, 2, 1).conv) == 3


def test_an_inverted_residual_adds_its_input_to_what_its_layers_make():
    """Not only where the layers make zero (above): the sum of the input and the layers' output, not a difference."""
    block = InvertedResidual(8, 8, 1, 1, 6).eval()
    x = torch.randn(2, 8, 5, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        made = block.conv(x)
        assert float(made.abs().max()) > 0.1  # the layers make something: a sum and a difference differ
        torch.testing.assert_close(block(x), x + made, rtol=0, atol=0)


def test_mobilenets_auxiliary_features_are_features_13s_and_the_rest_runs_on_them():
    """features.0 to features.17 in turn; the auxiliary head reads features.13's output (the end of the 96-channel
    stage, stride 16)."""
    backbone = MobileNetV2Backbone(3, 16, 0.25).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out, aux = backbone(x)
        h, after = x, {}
        for i, module in enumerate(backbone.features):
            h = after[i] = module(h)
    assert len(after) == 18
    torch.testing.assert_close(aux, after[13], rtol=0, atol=0)
    torch.testing.assert_close(out, after[17], rtol=0, atol=0)
    assert aux.shape == (1, backbone.aux_channels, 2, 2) and out.shape == (1, backbone.channels, 2, 2)


def test_the_stems_and_the_auxiliary_heads_widths_at_the_ends_of_the_width_range():
    """MobileNet's stem has _make_divisible(32 x width) channels as torchvision's (16 at width 0.5, 128 at width 4);
    the small backbone's stages never drop below one channel (width 0.05: 0.8, 1.6, 3.2 -> 1, 2, 3, 3); the auxiliary
    head's hidden layer has cin // 4 channels, at least one (torchvision's FCNHead: 6 in -> 1)."""
    assert [MobileNetV2Backbone(3, 16, w).features[0][0].out_channels for w in (0.5, 1, 4)] == [16, 32, 128]
    small = SmallBackbone(3, 16, 0.05)
    assert [stage[0].out_channels for stage in small.stages] == [1, 2, 3, 3]
    assert (small.channels, small.aux_channels) == (3, 3)
    assert [fcn_head(cin, 3)[0].out_channels for cin in (3, 6, 8, 64)] == [1, 1, 2, 16]


def test_the_image_pooling_branch_is_the_same_at_every_position():
    """Global average pooling then broadcast: constant over the map to the rounding of the interpolation weights
    (a few float32 units), and different from image to image."""
    pooling = ASPPPooling(4, 3).eval()
    with torch.no_grad():
        out = pooling(torch.randn(2, 4, 5, 7))
    assert out.shape == (2, 3, 5, 7)
    torch.testing.assert_close(out, out[:, :, :1, :1].expand_as(out), rtol=0,
                               atol=4 * torch.finfo(torch.float32).eps * float(out.abs().max()))
    assert not torch.equal(out[0, :, 0, 0], out[1, :, 0, 0])


class _Ramp(nn.Module):
    """Logits 0 and 1 in a 2 x 2 map: columns (0, 1) for class 0, rows for class 1, whatever the input."""

    def forward(self, features):
        ramp = torch.tensor([0.0, 1.0])
        return torch.stack([ramp.expand(2, 2), ramp[:, None].expand(2, 2)])[None].expand(len(features), -1, -1, -1)


def test_logits_are_upsampled_bilinearly_with_half_pixel_centres():
    """torchvision's (and VainF's) upsampling, align_corners=False: a 2-pixel ramp (0, 1) upsampled to 4 pixels
    reads (0, 1/4, 3/4, 1) along both axes, exactly (the weights 1/4 and 3/4 are exact in float32); the auxiliary
    logits too."""
    model = build_model("deeplabv3_small", input_shape=(1, 4, 4), num_classes=2, options=TINY | {"aux": True})
    model.classifier, model.aux_classifier = _Ramp(), _Ramp()
    expected = torch.tensor([0.0, 0.25, 0.75, 1.0])
    for out in (model.eval()(torch.rand(2, 1, 4, 4)), *model.train()(torch.rand(2, 1, 4, 4))):
        torch.testing.assert_close(out[0, 0], expected.expand(4, 4), rtol=0, atol=0)
        torch.testing.assert_close(out[0, 1], expected[:, None].expand(4, 4), rtol=0, atol=0)


def test_convolutions_are_he_initialized_by_fan_out():
    """N(0, 2 / fan_out) as torchvision's ResNet and MobileNetV2 (fan_out = out channels x kernel area): on the
    projections, whose fan in and fan out differ, the weights' standard deviation is within 5 standard errors of
    it (the sample standard deviation of n normals has relative error 1 / sqrt(2n))."""
    torch.manual_seed(0)
    model = build_model("deeplabv3_resnet50", input_shape=(3, 32, 32), num_classes=3, options={"width": 0.5})
    checked = 0
    for m in model.backbone.modules():
        if isinstance(m, nn.Conv2d) and m.in_channels != m.out_channels and m.weight.numel() >= 4096:
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            expected, n = math.sqrt(2 / fan_out), m.weight.numel()
            assert abs(float(m.weight.detach().std()) / expected - 1) < 5 / math.sqrt(2 * n), m
            checked += 1
    assert checked >= 10
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any()
               for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_mobilenet_channel_rounding():
    """torchvision's _make_divisible: the nearest multiple of 8, at least 8, and one step up where rounding lost
    more than 10% (11.2 -> 8 would lose 29%: 16; 320/9 -> 32 loses exactly 10%: kept)."""
    assert [_make_divisible(v) for v in (32, 12, 11.2, 4, 44, 59.2, 0.5 * 1280, 32 * (10 / 9))] == \
        [32, 16, 16, 8, 48, 56, 640, 32]


def test_the_builders_take_rgb_and_the_options_width():
    for build in (deeplabv3_resnet50, deeplabv3_mobilenetv2, deeplabv3_small):
        model = build(3, options=DeepLabOptions(width=0.25, aspp_channels=4))
        assert model.eval()(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)
    assert deeplabv3_small(3, options=DeepLabOptions(width=0.5)).backbone.channels == 32


def test_backbone_weights_already_under_backbone_keep_their_names():
    """A DeepLab's own state (keys under backbone.) loads as it is: nothing is prefixed twice."""
    source = build_model("deeplabv3_small", input_shape=(3, 16, 16), num_classes=3, options=TINY)
    target = build_model("deeplabv3_small", input_shape=(3, 16, 16), num_classes=3, options=TINY)
    mapped = backbone_state(target, source.state_dict())
    assert set(mapped) == {k for k in source.state_dict() if k.startswith("backbone.")}
    assert load_backbone(target, source.state_dict(), "own.pt") == len(mapped)
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in mapped.items())


def test_the_backbone_weights_errors_name_the_first_missing_tensor_and_the_shapes():
    model = build_model("deeplabv3_small", input_shape=(3, 16, 16), num_classes=3, options=TINY)
    state = {k.removeprefix("backbone."): v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    missing = {k: v for k, v in state.items() if not k.startswith("stages.0.")}
    with pytest.raises(ParameterError) as raised:
        load_backbone(model, missing, "w.pth")
    assert str(raised.value) == ("backbone_weights=w.pth is invalid: backbone_weights must be a state_dict with every "
                                 "backbone tensor in torchvision's layout (6 missing, e.g. stages.0.0.weight)")
    wrong = state | {"stages.1.0.weight": torch.zeros(9, 4, 3, 3)}
    with pytest.raises(ParameterError) as raised:
        load_backbone(model, wrong, "w.pth")
    assert str(raised.value) == (
        "backbone_weights=w.pth is invalid: backbone_weights must be weights of this backbone's shapes "
        f"(stages.1.0.weight is (9, 4, 3, 3), the model's {tuple(state['stages.1.0.weight'].shape)}: another width "
        "or input channels?)")
