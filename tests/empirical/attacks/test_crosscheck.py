"""AutoAttack: torchattacks' against the reference implementation (samat.empirical.attacks.crosscheck), and the
attacks under TF32 against float32."""

from __future__ import annotations

import copy
import math

import pytest

from samat.empirical.attacks.build import build_attack
from samat.empirical.attacks.crosscheck import crosscheck_autoattack
from samat.empirical.attacks.specs import spec
from samat.empirical.training.precision import tf32
from samat.empirical.vocabulary import Norm
from tests.empirical.attacks.helpers import accuracy, train_tiny_cnn

# ---------------------------------------------------------------------------------------------------------
# AutoAttack: torchattacks against the reference implementation
# ---------------------------------------------------------------------------------------------------------


def aa_tolerance(n: int) -> float:
    """Allowed |robust accuracy difference| between two correct AutoAttack implementations on n images.

    They differ only on borderline points, whose status depends on random starts. If at most 10% of the points
    are borderline (on this model PGD-10 and AutoAttack disagree on 0-3%) and each implementation breaks
    each one independently with probability 1/2, the difference of accuracies has standard deviation at
    most sqrt(0.1 n / 2) / n; we allow three: 4.7 points for n = 200, 8.4 for n = 64.
    """
    return 3 * math.sqrt(0.05 / n)


def _check_crosscheck(result: dict, n: int, eps: float) -> None:
    assert result["n"] == n and result["eps"] == eps and result["norm"] == "L2"
    numbers = ("clean_accuracy", "robust_accuracy_torchattacks", "robust_accuracy_reference", "difference")
    assert all(isinstance(result[k], float) for k in numbers)
    assert result["robust_accuracy_torchattacks"] <= result["clean_accuracy"]
    assert result["robust_accuracy_reference"] <= result["clean_accuracy"]
    assert 0 < result["robust_accuracy_reference"] < result["clean_accuracy"]  # a non-trivial comparison
    assert abs(result["difference"]) <= aa_tolerance(n)
    assert result["disagreements"] >= round(abs(result["difference"]) * n)


def test_autoattack_crosscheck_fast(trained, capsys):
    model, x, y = trained
    result = crosscheck_autoattack(model, x[:64], y[:64], eps="128/255", seed=0, batch_size=64)
    _check_crosscheck(result, 64, 128 / 255)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""  # the reference's logging stays out of our output


@pytest.mark.gpu
def test_autoattack_equals_the_reference_on_the_gpu():
    """The standard AutoAttack the evaluation runs (torchattacks', in TF32 on CUDA) against the reference code on
    the same 256 images and seed, on the GPU (the GPU suite's quick check)."""
    model, x, y = train_tiny_cnn(256)
    result = crosscheck_autoattack(model.cuda(), x.cuda(), y.cuda(), eps=128 / 255, seed=0, batch_size=256)
    _check_crosscheck(result, 256, 128 / 255)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["pgd10_l2", "autoattack_l2", "fab_l2", "stadv"])
def test_tf32_attacks_give_the_robust_accuracy_of_float32(trained_200, name):
    """The evaluation attacks in TF32 on CUDA (evaluate.attack_precision: 10-bit mantissas in convolutions and
    matrix products); on the trained model the robust accuracy equals full float32's, within the tolerance of
    two correct runs of an attack (borderline points, aa_tolerance)."""
    model, x, y = trained_200
    model, x, y = copy.deepcopy(model).cuda(), x.cuda(), y.cuda()
    s = spec(name).at(128 / 255) if spec(name).norm is Norm.L2 else spec(name)
    robust = {}
    for enabled in (True, False):
        with tf32(enabled):
            x_adv = build_attack(s, model, num_classes=10, seed=0, device="cuda")(x, y)
            robust[enabled] = float((accuracy(model, x_adv, y) & accuracy(model, x, y)).float().mean())
    assert abs(robust[True] - robust[False]) <= aa_tolerance(200), robust


@pytest.mark.slow
def test_autoattack_crosscheck_200_images(trained_200):
    """200 images: the reference agrees with torchattacks within 4.7 points, and both beat PGD-10."""
    model, xte, yte = trained_200
    result = crosscheck_autoattack(model, xte, yte, eps=128 / 255, seed=0, batch_size=200)
    _check_crosscheck(result, 200, 128 / 255)
    pgd_acc = float(accuracy(model, build_attack(spec("pgd10_l2").at(128 / 255), model, num_classes=10, seed=0,
                                                 device="cpu")(xte, yte), yte).float().mean())
    assert result["robust_accuracy_torchattacks"] <= pgd_acc + aa_tolerance(200)  # AA is at least PGD-strong
    assert result["robust_accuracy_reference"] <= pgd_acc + aa_tolerance(200)
