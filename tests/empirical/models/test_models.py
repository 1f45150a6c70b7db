"""Tests of empirical.models: shapes, sizes, normalization inside the model, memory formats, bf16 autocast,
gradients to the input, and the linear model's logistic loss. CPU only; WRN-28-10 and DeiT-Tiny run on
batches of 2.
"""

from __future__ import annotations

import copy
import functools
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from samat.core.errors import ParameterError
from samat.empirical.models import (
    BUILDERS,
    Architecture,
    DeiT,
    Normalize,
    WideResNet,
    build_model,
    count_parameters,
)
from samat.empirical.models.deit import Attention
from samat.empirical.vocabulary import Task
from tests.helpers import REPO

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
SHAPES = ((3, 32, 32), (1, 28, 28), (3, 64, 64))  # CIFAR, Fashion-MNIST, TinyImageNet
# The classifiers; the segmentation networks have their own tests (test_segmentation_models.py).
CLASSIFIERS = [a for a in Architecture if a.task is Task.CLASSIFICATION]
CONV_ARCHS = ("prn18", "wrn28_10", "small_cnn")
BATCH = 2


@functools.cache
def _cached(arch: str, shape: tuple[int, ...], normalized: bool) -> nn.Module:
    torch.manual_seed(0)
    mean, std = ((CIFAR_MEAN, CIFAR_STD) if shape[0] == 3 else ((0.286,), (0.353,))) if normalized else ((), ())
    return build_model(arch, input_shape=shape, num_classes=10, mean=mean, std=std).eval()


def model_for(arch: str, shape: tuple[int, ...] = (3, 32, 32), normalized: bool = True) -> nn.Module:
    """A fresh copy (tests may change it) of a model built once per session; eval mode."""
    return copy.deepcopy(_cached(arch, shape, normalized))


def images(shape: tuple[int, ...] = (3, 32, 32), seed: int = 0) -> torch.Tensor:
    return torch.rand(BATCH, *shape, generator=torch.Generator().manual_seed(seed))


# --- Parameter counts, written from the architecture descriptions (not from the code) --------------------

def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k  # all convolutions except DeiT's patch embedding are bias-free


def _bn(c: int) -> int:
    return 2 * c  # affine weight and bias


def prn18_size(c_in: int, classes: int) -> int:
    """He et al. 2016 PreAct blocks [2, 2, 2, 2], widths 64..512, 1x1 projection where the shape changes."""
    total, width = _conv(c_in, 64, 3), 64
    for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            projection = width != planes or (block == 0 and stride != 1)
            total += _bn(width) + _conv(width, planes, 3) + _bn(planes) + _conv(planes, planes, 3)
            total += _conv(width, planes, 1) if projection else 0
            width = planes
    return total + _bn(512) + 512 * classes + classes


def wrn_size(c_in: int, classes: int, depth: int = 28, widen: int = 10) -> int:
    """Zagoruyko & Komodakis 2016: (depth - 4) / 6 blocks per group, widths 16k, 32k, 64k."""
    total, width = _conv(c_in, 16, 3), 16
    for planes in (16 * widen, 32 * widen, 64 * widen):
        for _ in range((depth - 4) // 6):
            total += _bn(width) + _conv(width, planes, 3) + _bn(planes) + _conv(planes, planes, 3)
            total += _conv(width, planes, 1) if width != planes else 0
            width = planes
    return total + _bn(width) + width * classes + classes


def deit_size(c_in: int, hw: int, patch: int, classes: int, dim: int = 192, depth: int = 12, ratio: int = 4) -> int:
    """Touvron et al. 2021 DeiT-Ti: patch embedding, class token, position embeddings, pre-norm blocks, head."""
    tokens = (hw // patch) ** 2 + 1  # patches plus the class token; no distillation token
    block = (2 * dim + dim * 3 * dim + 3 * dim + dim * dim + dim  # LayerNorm, qkv, projection
             + 2 * dim + dim * ratio * dim + ratio * dim + ratio * dim * dim + dim)  # LayerNorm, MLP
    return c_in * patch * patch * dim + dim + dim + tokens * dim + depth * block + 2 * dim + dim * classes + classes


@pytest.mark.parametrize(("arch", "shape", "expected"), [
    ("prn18", (3, 32, 32), prn18_size(3, 10)),
    ("prn18", (1, 28, 28), prn18_size(1, 10)),
    ("wrn28_10", (3, 32, 32), wrn_size(3, 10)),
    ("wrn28_10", (1, 28, 28), wrn_size(1, 10)),
    ("deit_tiny", (3, 32, 32), deit_size(3, 32, 4, 10)),
    ("deit_tiny", (3, 64, 64), deit_size(3, 64, 4, 10)),
])
def test_parameter_count_matches_the_architecture(arch: str, shape: tuple[int, ...], expected: int) -> None:
    assert count_parameters(model_for(arch, shape)) == expected


# Published sizes: PRN-18 11.17M, the CIFAR ResNet-18 family's usual figure (11,172,170 by the formula above);
# WRN-28-10 36.5M (Zagoruyko & Komodakis 2016, results table; 36,479,194); DeiT-Ti with ImageNet's 224x224
# inputs, patch 16 and 1000 classes 5.7M (timm's deit_tiny_patch16_224; 5,717,416; the DeiT paper's Table 1
# rounds to 5M).
@pytest.mark.parametrize(("name", "build", "published"), [
    ("PRN-18", lambda: model_for("prn18"), 11.17e6),
    ("WRN-28-10", lambda: model_for("wrn28_10"), 36.5e6),
    ("DeiT-Ti ImageNet", lambda: DeiT((224, 224), 1000, patch_size=16), 5.7e6),
])
def test_parameter_count_is_within_one_percent_of_the_published_size(name: str, build, published: float) -> None:
    assert count_parameters(build()) == pytest.approx(published, rel=0.01), name


def test_deit_imagenet_configuration_has_deit_ti_exact_size() -> None:
    assert count_parameters(DeiT((224, 224), 1000, patch_size=16)) == deit_size(3, 224, 16, 1000) == 5_717_416


# --- Shapes and structure ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("arch", CLASSIFIERS)
def test_output_shape(arch: str, shape: tuple[int, ...]) -> None:
    with torch.no_grad():
        out = model_for(arch, shape)(images(shape))
    assert out.shape == (BATCH, 10)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("classes", [2, 3])
def test_linear_model_on_vectors(classes: int) -> None:
    model = build_model("linear", input_shape=(7,), num_classes=classes)
    assert model(torch.randn(5, 7)).shape == (5, classes)
    assert model.weight.shape == ((7,) if classes == 2 else (classes, 7))
    assert count_parameters(model) == 7 * (1 if classes == 2 else classes)  # no bias


@pytest.mark.parametrize("arch", CLASSIFIERS)
def test_first_module_is_normalize(arch: str) -> None:
    assert isinstance(next(iter(model_for(arch).children())), Normalize)


def test_small_cnn_has_batchnorm() -> None:
    # The trainer checks that SAM's second pass leaves BN running statistics alone; that needs BN layers.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model_for("small_cnn", (1, 28, 28)).modules()) == 3


def test_deit_has_class_token_and_no_distillation_token() -> None:
    model = model_for("deit_tiny")
    assert model.pos_embed.shape == (1, 8 * 8 + 1, 192)  # 64 patch tokens + the class token
    assert model.cls_token.shape == (1, 1, 192) and not hasattr(model, "dist_token")


# --- Normalization lives inside the model --------------------------------------------------------------

def test_normalize_module() -> None:
    norm = Normalize((0.5, 0.25), (0.5, 2.0))
    assert norm.mean.shape == norm.std.shape == (1, 2, 1, 1)
    x = torch.rand(3, 2, 4, 4)
    expected = torch.stack(((x[:, 0] - 0.5) / 0.5, (x[:, 1] - 0.25) / 2.0), dim=1)
    torch.testing.assert_close(norm(x), expected)
    identity = Normalize()
    assert identity(x) is x and identity.channels == 0


@pytest.mark.parametrize("arch", CLASSIFIERS)
def test_normalization_happens_inside(arch: str) -> None:
    model = model_for(arch)
    bare = copy.deepcopy(model)
    bare.normalize = Normalize()  # the same network with an identity first module
    x = images()
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        inside, outside = model(x), bare((x - mean) / std)
    # The same float operations in the same order: equal to the last bit (and unequal if model skipped them).
    torch.testing.assert_close(inside, outside, rtol=0, atol=0)


@pytest.mark.parametrize("arch", CLASSIFIERS)
def test_state_dict_holds_the_normalization_and_round_trips(arch: str) -> None:
    model = model_for(arch)
    state = model.state_dict()
    torch.testing.assert_close(state["normalize.mean"].flatten(), torch.tensor(CIFAR_MEAN))
    torch.testing.assert_close(state["normalize.std"].flatten(), torch.tensor(CIFAR_STD))
    torch.manual_seed(123)  # different initial weights
    fresh = build_model(arch, input_shape=(3, 32, 32), num_classes=10, mean=CIFAR_MEAN, std=CIFAR_STD).eval()
    assert not all(torch.equal(v, state[k]) for k, v in fresh.state_dict().items())
    fresh.load_state_dict(state, strict=True)
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


def test_state_dict_of_other_normalization_does_not_load() -> None:
    grey = build_model("small_cnn", input_shape=(3, 32, 32), num_classes=10)  # identity: empty buffers
    with pytest.raises(RuntimeError, match="normalize.mean"):
        grey.load_state_dict(model_for("small_cnn").state_dict())


# --- Memory format, autocast, gradients, compile ------------------------------------------------------------

@pytest.mark.parametrize("arch", CLASSIFIERS)
def test_channels_last_gives_the_same_output(arch: str) -> None:
    model, x = model_for(arch), images()
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    # Channels-last kernels sum in another order: float32 round-off (~1e-7 relative per operation, growing over
    # up to 28 layers), far below the O(1) change a mixed-up channel order would make.
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max() + 1e-6


@pytest.mark.parametrize("arch", ["small_cnn", "linear", "prn18", "deit_tiny"])
def test_cpu_bfloat16_autocast(arch: str) -> None:
    model, x = model_for(arch), images()
    with torch.no_grad():
        expected = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16
    # bfloat16 keeps 8 significant bits (unit round-off 2^-9 ~ 0.2%); a few roundings per layer stay well
    # inside 5% of the logit scale.
    assert (low.float() - expected).abs().max() <= 0.05 * expected.abs().max()
    model.train()  # a training step under autocast: BN in training mode, gradients back to float32 inputs
    x.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x), torch.arange(BATCH))
    loss.backward()
    assert x.grad is not None and x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("arch", CLASSIFIERS)
def test_gradient_reaches_every_input(arch: str) -> None:
    model, x = model_for(arch), images().requires_grad_(True)
    F.cross_entropy(model(x), torch.arange(BATCH)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert (x.grad.flatten(1).norm(dim=1) > 0).all()  # every example gets an attack direction


@pytest.mark.parametrize("arch", CLASSIFIERS)
def test_dynamo_traces_forward_as_one_graph(arch: str) -> None:
    # fullgraph=True fails on any graph break (data-dependent Python control flow); the eager backend keeps
    # this a tracing check, without compiling kernels.
    model, x = model_for(arch), images()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


# Run in a fresh interpreter: in this one, whatever other tests imported or initialized first would decide the
# outcome. A finder records any attempt to import torchvision (installed or not), and torch.cuda's lazy
# initializer (which every CUDA use goes through, from Python or C++) is wrapped to record calls.
IMPORT_PROBE = """
import importlib.abc, sys

attempts = []

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "torchvision":
            attempts.append(name)
        return None

sys.meta_path.insert(0, Watch())
import torch

cuda_calls, lazy_init = [], torch.cuda._lazy_init
torch.cuda._lazy_init = lambda: cuda_calls.append(1) or lazy_init()
import samat.empirical.models as M

for arch in M.Architecture:
    if arch.task is M.Task.TEXT:  # a Hugging Face network, named by a folder (tests/test_optional_imports.py)
        continue
    shape = (5,) if arch == "linear" else (3, 32, 32)
    options = {"width": 0.25} if arch.task is M.Task.SEGMENTATION else None
    M.build_model(arch, input_shape=shape, num_classes=10, options=options)(torch.rand(2, *shape))
assert not attempts, f"imported {attempts}"
assert not cuda_calls and not torch.cuda.is_initialized(), "initialized CUDA"
print("clean")
"""


def test_import_touches_neither_cuda_nor_torchvision() -> None:
    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "clean", out.stderr[-2000:]


# --- The papers' linear classifier ------------------------------------------------------------------------

@given(d=st.integers(1, 40), seed=st.integers(0, 2**31 - 1), scale=st.floats(1e-3, 30.0))
def test_linear_cross_entropy_is_the_logistic_loss(d: int, seed: int, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    model = build_model("linear", input_shape=(d,), num_classes=2).double()
    with torch.no_grad():
        model.weight.copy_(scale * torch.randn(d, generator=g, dtype=torch.float64))
    x = torch.randn(16, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 2, (16,), generator=g)
    y = 2.0 * labels.double() - 1.0  # class 1 means y = +1
    z = x @ model.weight
    logits = model(x)
    torch.testing.assert_close(logits[:, 1] - logits[:, 0], z, rtol=1e-12, atol=1e-12)
    ce = F.cross_entropy(logits, labels, reduction="none")
    # log(1 + exp(-y w.x)), computed without overflow. Cross-entropy takes logsumexp(-z/2, z/2) - z_y/2, which
    # cancels terms of size |z|/2 <= ~1e3 here: float64 round-off ~1e-13 absolute.
    logistic = torch.logaddexp(torch.zeros_like(z), -y * z)
    torch.testing.assert_close(ce, logistic, rtol=1e-12, atol=1e-12)
    assert torch.equal(logits.argmax(1) == 1, z > 0) or bool((z == 0).any())  # predicts sgn(w . x)


def test_linear_weight_is_the_parameter_vector() -> None:
    model = build_model("linear", input_shape=(3,), num_classes=2)
    assert isinstance(model.weight, nn.Parameter) and model.weight.shape == (3,)
    assert [p for p in model.parameters()] == [model.weight]
    with torch.no_grad():
        model.weight.copy_(torch.tensor([1.0, -2.0, 0.5]))
    assert model(torch.tensor([[2.0, 1.0, 4.0]])).tolist() == [[-1.0, 1.0]]  # z = 2 - 2 + 2 = 2


def test_linear_model_flattens_images() -> None:
    model = model_for("linear", (1, 28, 28), normalized=False)
    x = images((1, 28, 28))
    torch.testing.assert_close(model(x), F.linear(x.flatten(1), model.weight), rtol=0, atol=0)


# --- Errors a person can act on ------------------------------------------------------------------------------

def test_unknown_architecture_names_the_parameter_and_the_choices() -> None:
    with pytest.raises(ParameterError) as err:
        build_model("resnet50", input_shape=(3, 32, 32), num_classes=10)
    message = str(err.value)
    assert err.value.name == "model" and "\n" not in message
    assert message.startswith("model=resnet50 is invalid")
    assert all(arch in message for arch in Architecture)


def test_deit_patch_must_divide_the_image() -> None:
    with pytest.raises(ParameterError, match="patch size 4") as err:
        build_model("deit_tiny", input_shape=(3, 30, 30), num_classes=10)
    assert err.value.name == "input_shape"
    with pytest.raises(ParameterError, match="divisor of the image height and width") as err:
        DeiT((32, 32), 10, patch_size=5)
    assert err.value.name == "patch_size"


@pytest.mark.parametrize(("kwargs", "name"), [
    (dict(arch="prn18", input_shape=(10,)), "input_shape"),  # convolutional model on vectors
    (dict(arch="small_cnn", input_shape=(1, 4, 4)), "input_shape"),  # too small for three max-pools
    (dict(arch="prn18", input_shape=(3, 32)), "input_shape"),
    (dict(arch="prn18", input_shape=(3, 0, 32)), "input_shape"),
    (dict(arch="prn18", num_classes=1), "num_classes"),
    (dict(arch="prn18", mean=(0.5,), std=(0.5,)), "mean"),  # one value for three channels
    (dict(arch="prn18", mean=CIFAR_MEAN, std=(0.2, 0.2)), "std"),
    (dict(arch="prn18", mean=CIFAR_MEAN, std=(0.2, 0.0, 0.2)), "std"),
    (dict(arch="linear", input_shape=(10,), mean=(0.5,), std=(0.5,)), "mean"),  # vectors are not normalized
])
def test_invalid_input_is_a_parameter_error(kwargs: dict, name: str) -> None:
    args = dict(input_shape=(3, 32, 32), num_classes=10) | kwargs
    with pytest.raises(ParameterError) as err:
        build_model(args.pop("arch"), **args)
    assert err.value.name == name and "\n" not in str(err.value)


# --- Pieces ---------------------------------------------------------------------------------------------------

def test_attention_equals_softmax_attention_by_hand() -> None:
    torch.manual_seed(0)
    attn = Attention(12, num_heads=3).eval()
    x = torch.randn(2, 5, 12)
    q, k, v = attn.qkv(x).reshape(2, 5, 3, 3, 4).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(4), dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 12))
    torch.testing.assert_close(attn(x), expected)


def test_wide_resnet_dropout_is_configurable() -> None:
    torch.manual_seed(0)
    model, x = WideResNet(depth=10, widen=1, dropout=0.5), images()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))  # dropout active in training
        model.eval()
        assert torch.equal(model(x), model(x))
    with pytest.raises(ParameterError):
        WideResNet(depth=27)


def test_every_architecture_has_a_builder():
    assert list(BUILDERS) == list(Architecture)
