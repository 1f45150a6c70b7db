"""DeepLabv3: output shapes at several input sizes, output strides, the auxiliary head, parameter counts against
torchvision's published ones, and ImageNet weights in torchvision's layout loaded into the backbone."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from samat.core.errors import ParameterError
from samat.empirical.models import DeepLabOptions, Normalize, build_model, count_parameters, load_backbone
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
