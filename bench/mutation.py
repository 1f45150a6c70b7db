"""Mutation testing: how many small, plausible bugs does the test suite catch?

mutmut (the version pinned in pyproject.toml's ``mutation`` extra, installed on first use) plants one change at a
time in each function of the targeted modules (an operator, a constant, a comparison, an argument dropped), runs
the tests that cover that function, and counts the mutant killed if one fails. Each target is one module with the
tests that exercise it, so that a whole run fits on a small machine; ``--only`` runs some of them. Survivors are
classified (equivalent, CUDA only, wording, untested: see :func:`classify`); the score leaves out the equivalent
ones and, on a run without ``--gpu``, the CUDA-only ones.

    python bench/mutation.py                         # every target, fresh; prints scores and survivors
    python bench/mutation.py --only theory           # a group (theory, training, evaluation, core, cli, attacks,
                                                     # models, experiments) or a target (a module's file name)
    python bench/mutation.py --json m.json --markdown m.md
    python bench/mutation.py --classify m.json       # an earlier run's survivors, classified again

Each target works in its own folder, .mutation/TARGET/ (git-ignored): a generated pyproject.toml with the
target's [tool.mutmut] table, links to the packages and tests, and mutmut's copy of the tree in mutants/.
Non-interactive; prints the wall time. Results are in docs/MUTATION.md.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from samat.core.errors import SamatError
from samat.core.results import atomic_write_text

from common import count, host, output_file, run, write_record

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".mutation"
PACKAGES = ("samat",)  # the one import name: every subpackage is under it


@dataclass(frozen=True)
class Target:
    """One module under mutation: its file, the functions mutated (mutmut name globs, relative to the module) and
    the tests that exercise them (pytest arguments: files or node ids)."""

    group: str
    path: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ("*",)

    @property
    def module(self) -> str:
        return self.path.removesuffix(".py").replace("/", ".")

    @property
    def patterns(self) -> list[str]:
        return [f"{self.module}.{f}" for f in self.functions]


_EVALUATE_CHECKS = ("xǁ_Evaluationǁcheck_*", "xǁ_Evaluationǁresult_*", "x_stronger_pgd_*", "x_large_attack_*")
_EVALUATE_TESTS = ("tests/empirical/evaluation/test_evaluate.py", "tests/empirical/evaluation/test_scorers.py")
_TRAIN = "tests/empirical/training/test_loop.py::"
_OUTPUT = "tests/cli/test_output.py::"
_STEP_TESTS = tuple(_TRAIN + t for t in (
    "test_each_method_lowers_the_loss_on_a_fixed_batch", "test_sam_perturbation_has_norm_rho_and_is_undone_exactly",
    "test_asam_perturbation_has_adaptive_norm_rho", "test_sam_step_matches_pytorch_optimizer",
    "test_second_pass_leaves_batchnorm_statistics_alone", "test_running_stats_frozen_restores_tracking"))
_EPOCHS = _TRAIN + "test_each_epoch_draws_its_own_shuffle_augmentation_and_esam_masks"
_ESAM = _TRAIN + "test_esam_perturbation_is_sams_on_a_random_fraction_over_keep_probability"
_SEED_TESTS = ("tests/empirical/training/test_setup.py",
               _TRAIN + "test_interrupted_and_resumed_run_ends_with_the_same_weights", _EPOCHS)
TARGETS = {t.path.rsplit("/", 1)[1].removesuffix(".py"): t for t in (
    Target("theory", "samat/theory/closed_form.py", ("tests/theory/test_closed_form.py",)),
    Target("theory", "samat/theory/objectives.py", ("tests/theory/test_model_objectives.py",
                                              "tests/theory/test_objectives_exact.py",
                                              "tests/theory/test_inner_max_and_slopes.py")),
    Target("theory", "samat/theory/numeric.py", ("tests/theory/test_numeric.py",  # the full ball's two local minima:
                                           "tests/theory/test_lifted.py::test_full_ball_at_closed_form_matches_the_numerical_optimum")),
    Target("training", "samat/empirical/training/optimizers.py", _STEP_TESTS + (
        "tests/empirical/training/test_setup.py", _TRAIN + "test_learning_rate_schedule_is_piecewise_per_iteration",
        _ESAM)),
    Target("training", "samat/empirical/training/steps.py", _STEP_TESTS + ("tests/empirical/training/test_steps.py",
                                                                     _EPOCHS)),
    Target("training", "samat/empirical/training/setup.py", _SEED_TESTS,
           ("x_round_seed_*", "x_round_generator_*")),  # the training loop's seeding
    Target("evaluation", "samat/empirical/evaluation/checks.py", ("tests/empirical/evaluation/test_evaluate.py",)),
    Target("evaluation", "samat/empirical/evaluation/evaluate.py", _EVALUATE_TESTS, _EVALUATE_CHECKS),
    Target("evaluation", "samat/empirical/evaluation/classification.py",
           _EVALUATE_TESTS + ("tests/empirical/evaluation/test_classification_scorer.py",),
           ("xǁHitsǁ*", "x_attack_success_rate_*")),
    # the modules written since the first audit
    Target("core", "samat/core/locks.py", ("tests/core/test_locks.py", "tests/core/test_disk_full.py")),
    Target("cli", "samat/cli/runtime.py", ("tests/cli/test_runtime.py",) + tuple(_OUTPUT + t for t in (
        "test_threads_are_torchs_unless_chosen_and_wait_passively", "test_threads_beyond_four_per_core_are_refused",
        "test_more_threads_than_cores_is_a_warning", "test_samat_threads_beyond_reason_is_one_line_before_the_work"))),
    Target("attacks", "samat/empirical/attacks/pixle.py", ("tests/empirical/attacks/test_pixle.py",)),
    # torch.compile(fullgraph=True) cannot trace mutmut's trampolines in the forward passes: that test is left out
    Target("models", "samat/empirical/models/deeplab.py", (
        "tests/empirical/models/test_deeplab.py", "--deselect",
        "tests/empirical/models/test_deeplab.py::test_channels_last_bf16_gradients_and_one_graph")),
    Target("training", "samat/empirical/training/fast.py", ("tests/empirical/training/test_fast.py",)),
    Target("evaluation", "samat/empirical/pixelwise.py", ("tests/empirical/test_pixelwise.py",)),
    Target("evaluation", "samat/empirical/evaluation/segmentation.py", _EVALUATE_TESTS + (
        "tests/empirical/evaluation/test_segmentation_scorer.py", "tests/empirical/test_pixelwise.py")),
    Target("experiments", "samat/empirical/experiments/plan.py", ("tests/empirical/experiments/test_plan.py",
                                                                   "tests/empirical/experiments/test_text_plan.py")),
    # submitit's local executor is left out: its tasks, other processes, cannot report to mutmut which functions
    # they ran (they fail in its first pass); test_launch.py runs submit with a fake executor instead
    Target("experiments", "samat/empirical/experiments/launch.py", ("tests/empirical/experiments/test_launch.py",)
           + tuple("tests/cli/test_grid.py::" + t for t in (
               "test_slurm_resources_and_time_limits", "test_the_launchers_requests_are_checked_before_anything",
               "test_status_shows_queued_running_and_failed_jobs", "test_the_tasks_import_the_code_that_submits_them",
               "test_slurm_states_come_from_squeue_then_sacct"))),
)}
GROUPS = {g: [name for name, t in TARGETS.items() if t.group == g] for g in dict.fromkeys(t.group for t in
                                                                                     TARGETS.values())}
DETECTED = {"killed", "timeout", "segfault"}  # a test failed, or the mutant made the tests hang or crash
_DTYPE = re.compile(r",\s*dtype=(?:float|None)\s*\)|,\s*\)|np\.finfo\((?:np\.float64|None)\)")
_STRING = re.compile(r"\"[^\"]*\"|'[^']*'")
_DEVICE = re.compile(r"\bdevice=[\w.]+")
_TRAILING_COMMA = re.compile(r",\s*(?=[,)])")


# Equivalent mutants found by reading them: (mutant name glob, text of the mutated line, why nothing changes).
KNOWN_EQUIVALENT = [
    ("samat.theory.objectives.*", "_arguments(w1, None, ",
     "objectives._arguments does not use p (the thresholds depend on w and the attack only)"),
    ("samat.theory.objectives.x_risk_slope_*", "!= 0) else 2.0",
     "on that branch eps_x1 is zero everywhere, and sigma only multiplies it"),
    ("samat.theory.objectives.x_risk_slope_*", "np.where(w1 > 0, 1.0, -1.0)",
     "differs only at w1 = 0, where eps_x1 |w1| has no derivative: either one-sided slope is a valid answer"),
    ("samat.theory.objectives.x_sam_per_sample_drops_*", "for s in (1.0, +1.0)",
     "s = -1 and s = +1 give the same drop: max(eps, -eps) = eps for both classes"),
    ("samat.theory.objectives.x_sam_per_sample_drops_*", " / s",
     "s is +1 or -1, so dividing by it is multiplying by it"),
    ("samat.theory.objectives.x__margin_arguments_*", "shift + drops[1]) / w_l2, (w1 + shift + drops[1])",
     "its only caller with drops (the per-sample SAM reading) passes equal drops: every sample loses eps"),
    ("samat.theory.objectives.x_risk_slope_*", "!= 0)) or True else 1.0",
     "sigma = sign(w1) also where eps_x1 is zero, where sigma only multiplies that zero"),
    ("samat.theory.objectives.x_risk_slope_*", "np.asarray(None, dtype=float) != 0",
     "NaN != 0 is true: sigma = sign(w1) always, which only matters where eps_x1 is nonzero, as before"),
    ("samat.theory.objectives.x_risk_slope_*", "!= 1) else 1.0",
     "differs only where eps_x1 is exactly 1 everywhere, outside its valid range (eps_x1 < 1)"),
    ("samat.theory.objectives.x_risk_slope_*", "eps_x1 / sigma",
     "sigma is +1 or -1, so dividing by it is multiplying by it"),
]
# The inner maximum's refinement (sam_inner_max) run where it is not needed, or over a wider bracket: every grid node
# stays a candidate and the log-risk has a single critical point, so the maximum comes out the same to its bound.
_MORE_REFINEMENT = ("outward = np.where(None, s_best >= -e_best", "np.where(None, s_best <= e_best, False)",
                    "s_best > -e_best", "s_best >= +e_best", "s_best < e_best", "~outward | (sam_eps > 0)",
                    "(sam_eps >= 0)", "if needs.size or refine", "best[needs] - 2, 0", "best[needs] + 2, grid - 1",
                    "np.where(best == grid + 1, s_best")
KNOWN_EQUIVALENT += [
    ("samat.theory.objectives.x_sam_inner_max_*", text,
     "the refinement between grid nodes runs where it is not needed, or over a wider bracket: every grid node "
     "stays a candidate and the log-risk has one critical point, so the maximum is the same to its rounding bound")
    for text in _MORE_REFINEMENT]
KNOWN_EQUIVALENT += [
    ("samat.theory.objectives.x_sam_inner_max_*", "shape = arrays[1].shape",
     "np.broadcast_arrays gives every array the same shape"),
    ("samat.theory.objectives.x_sam_inner_max_*", "axis=+1",
     "the arrays are 2-D (points x candidates) there, so axis 1 is axis -1"),
    ("samat.theory.objectives.x_sam_inner_max_*", "k = cand_d.shape[+1]",
     "cand_d is 2-D, so shape[1] is shape[-1]"),
    ("samat.theory.objectives.x_sam_inner_max_*", "re(value, None)",
     "None is as false as False: the reshape without the candidates' axis"),
    ("samat.theory.objectives.x_sam_inner_max_*", "re(error, None)",
     "None is as false as False: the reshape without the candidates' axis"),
    ("samat.theory.objectives.x_sam_inner_max_*", "grid: int = 18",
     "one more grid node: the same maximum within its rounding bound (the tests' tolerance is the bound)"),
    ("samat.theory.objectives.x_sam_inner_max_*", "refine: int = 41",
     "one more golden-section step: the same maximum within its rounding bound"),
    ("samat.theory.objectives.x_golden_section_max_*", "left = fc > fd",
     "only a tie fc == fd goes the other way, where both halves hold a maximizer"),
    ("samat.theory.objectives.x_golden_section_max_*", "np.where(None, c, d_new)",
     "on the left branch d_new equals the old c in exact arithmetic (the golden ratio's identity), so only "
     "rounding differs"),
    ("samat.theory.objectives.x_golden_section_max_*", "return np.where(None, c, d)",
     "c and d are both inside the final bracket, 0.618^iters of the start wide: either is the maximizer to that "
     "width"),
    ("samat.theory.objectives.x_golden_section_max_*", "return np.where(fc > fd, c, d)",
     "only a tie goes the other way, between two points of the final bracket"),
    ("samat.empirical.evaluation.evaluate.*check_families*", "labels[1:], strict=None)",
     "strict=None is as false as strict=False, zip's default"),
    ("samat.empirical.evaluation.evaluate.*check_families*", "zip(labels, labels[1:], )",
     "strict=False is zip's default"),
    ("samat.empirical.evaluation.evaluate.x_large_attack_*", 'spec("PGD20_LINF")',
     "attacks.specs.spec lower-cases the name it is given"),
    ("*WeightPerturbation*__init__*", "keep_probability: float = 2.0",
     "a keep probability >= 1 draws no mask: 1.0 and 2.0 both mean plain SAM"),
    ("samat.empirical.training.steps.*", "zero_grad(set_to_none=",
     "gradients zeroed instead of freed: the next backward fills them the same, since every trainable parameter of "
     "samat's models receives a gradient (SGD and Adam skip only parameters whose gradient is None)"),
    ("samat.empirical.training.steps.x_sam_step_*", "ctx.perturbation.ascend(None)",
     "SAM and ASAM draw no mask (keep probability 1): the generator is ESAM's only"),
    ("samat.empirical.training.steps.x_adversarial_step_*", "return standard_step(ctx, x_adv, y, None)",
     "standard_step does not use the generator"),
    ("samat.empirical.training.optimizers.x_make_capturable_*", "dtype=None, device=device)",
     "torch.tensor(float) is float32 under torch's default dtype, which samat never changes"),
    ("samat.empirical.training.optimizers.x_make_capturable_*", "torch.tensor(float(group[\"lr\"]), device=device)",
     "torch.tensor(float) is float32 under torch's default dtype, which samat never changes"),
]
KNOWN_EQUIVALENT += [  # core/locks.py
    ("samat.core.locks.x_holder_of_*", "if (path.parent.exists()) or True else None",
     "a folder that does not exist resolves to its absolute path all the same, and no lock held has it"),
    ("samat.core.locks.xǁFolderLockǁ_lock_*", "time.monotonic() >= deadline",
     "the clock is continuous: only the instant of the deadline itself compares differently"),
    ("samat.core.locks.xǁFolderLockǁ_record_*", "os.ftruncate(fd, 1)",
     "the record written next at offset 0 is longer than one byte, so the file ends up as the record either way"),
    ("samat.core.locks.xǁHolderǁread_*", "os.pread(fd, 4097, 0)",
     "one byte more read: only a record of exactly 4,097 bytes reads differently, and samat's (a short purpose, a "
     "pid, a host name of at most 255 bytes, a time, a job id) stay under 600"),
    ("samat.core.locks.xǁHolderǁread_*", "if (text.strip()) or True else None",
     "json.loads of an empty file raises JSONDecodeError, caught: None either way"),
]

KNOWN_EQUIVALENT += [  # cli/runtime.py
    ("samat.cli.runtime.x_use_cpu_threads_*", 'os.environ.get("OMP_WAIT_POLICY", "XXXX")',
     "another default for an unset policy: neither \"\" nor \"XXXX\" reads as ACTIVE"),
]
KNOWN_EQUIVALENT += [  # attacks/pixle.py
    ("samat.empirical.attacks.pixle.*_candidates_*", "torch.where(used, row * w + col, 1)",
     "the source of an unused slot is never read: each destination takes its largest used slot, and unused slots "
     "write to the dropped column h * w"),
    ("samat.empirical.attacks.pixle.*_candidates_*", "winner = torch.full((n, h * w + 1), -1, dtype=None",
     "torch.full with an integer fill is int64 already"),
    ("samat.empirical.attacks.pixle.*_candidates_*", "winner = torch.full((n, h * w + 1), -1, device=dev)",
     "torch.full with an integer fill is int64 already"),
    ("samat.empirical.attacks.pixle.*_candidates_*", "torch.full((n, h * w + 2), -1",
     "one more column past the destinations, dropped with the other (winner[:, :h * w])"),
    ("samat.empirical.attacks.pixle.*_candidates_*", "torch.full((n, h * w + 1), -2",
     "another negative mark for 'no patch pixel': only its sign is read (winner >= 0, clamp_min(0))"),
]
KNOWN_EQUIVALENT += [  # training/fast.py
    ("samat.empirical.training.fast.xǁFastStepǁ__init__*", "warmup: int = 3",
     "one more warm-up step before the capture, undone like the others (_restore): the same first replay"),
    ("samat.empirical.training.fast.xǁFastStepǁ__init__*", "self._tried = None",
     "None is as false as False: the first full batch is the trial either way"),
    ("samat.empirical.training.fast.xǁFastStepǁ__call__*", 'self._captured = ""',
     "after a fallback every batch takes the eager step and nothing reads the captured step again"),
] + [
    ("samat.empirical.training.fast.xǁFastStepǁ__call__*", f"_restore(ctx, saved, gen, new_state={value})",
     "the optimizer state that the failed trial created zeroed instead of dropped: for SGD and Adam a zeroed state "
     "is a fresh one (0.9 * 0 + g = g; Adam's moments and step count start at zero: the module's docstring), so the "
     "eager step that follows computes the same, bit for bit")
    for value in ("None", '"XXdropXX"', '"DROP"')
] + [
    ("samat.empirical.training.fast.x__snapshot_*", f"state_dict(keep_vars={value})",
     "the state dict's tensors, detached either way, then cloned: the same copies")
    for value in ("None", "False")
] + [
    ("samat.empirical.training.fast.x__snapshot_*", "isinstance(value, torch.Tensor)) or True",
     "every value of SGD's and Adam's state is a tensor (Adam's step count too), so each is cloned either way"),
]
KNOWN_EQUIVALENT += [  # pixelwise.py
    ("samat.empirical.pixelwise.x_confusion_*", text,
     "labels are in [0, K) or the ignore label: the clamp only keeps the ignored pixels' indices in range, and those "
     "are dropped (index[labelled]) before counting")
    for text in ("y.clamp(None, k - 1)", "y.clamp(0, None)", "y.clamp(0, )", "y.clamp(0, k + 1)")
] + [
    ("samat.empirical.pixelwise.x_iou_*", 'float("NAN")', "float reads NAN as NaN too"),
    ("samat.empirical.pixelwise.x_pixel_loss_*", "if (aux_weight) or True else loss",
     "with aux_weight 0 the auxiliary loss is added times 0: the same loss and gradient (a cross-entropy of finite "
     "logits is finite)"),
    ("samat.empirical.pixelwise.x_size_batches_*", "torch.tensor(members[start:start + batch_size], dtype=None)",
     "a list of Python ints is int64 already"),
    ("samat.empirical.pixelwise.x_size_batches_*", "torch.tensor(members[start:start + batch_size], )",
     "a list of Python ints is int64 already"),
]
_LAUNCH = "samat.empirical.experiments.launch."
KNOWN_EQUIVALENT += [  # experiments/launch.py
    (_LAUNCH + "x__ask_slurm_*", 'line.strip().rpartition("|")',
     "squeue's %i|%T and sacct's JobID,State lines hold one '|': split at the first or the last, the same"),
    (_LAUNCH + "x__ask_slurm_*", "timeout=61", "a time limit one second longer"),
    (_LAUNCH + "x__slurm_answers_*", "timeout=31", "a time limit one second longer"),
    (_LAUNCH + "x__recorded_tasks_*", "raise ValueError(None)",
     "the error is caught at once and replaced by the one-line 'corrupt' error"),
    (_LAUNCH + "x__use_task_cpus_*", 'os.environ.get("SLURM_CPUS_PER_TASK", "XXXX")',
     "another default for an unset variable: neither \"\" nor \"XXXX\" is a number of CPUs"),
] + [
    (_LAUNCH + "x_submit_*", text, "submitit returns one job per task: zip's strictness is never tested")
    for text in ("zip(todo, jobs, strict=None)", "zip(todo, jobs, )", "zip(todo, jobs, strict=False)")
] + [
    (_LAUNCH + "x_submit_*", text, "launch.json's indentation only: the same JSON")
    for text in ("indent=None)", "indent=3)", "               )")  # the last: indent=2 dropped (write_json's 1)
]
_DEEPLAB = "samat.empirical.models.deeplab."
KNOWN_EQUIVALENT += [  # models/deeplab.py
    (_DEEPLAB + "*", "bias=None", "None is as false as False: the convolution has no bias either way"),
    (_DEEPLAB + "*", "inplace=None", "ReLU out of place: the same values (in place only saves memory)"),
    (_DEEPLAB + "*", "inplace=False", "ReLU out of place: the same values (in place only saves memory)"),
    (_DEEPLAB + "*", 'mode="bilinear", align_corners=None)', "bilinear's align_corners=None means False"),
    (_DEEPLAB + "*", 'mode="bilinear", )', "bilinear's align_corners defaults to False"),
    (_DEEPLAB + "xǁASPPPoolingǁforward*", "align_corners=True",
     "the pooled map is 1 x 1: upsampled, it is the same constant whatever the corners' alignment"),
    (_DEEPLAB + "*", "x.shape[+2:]", "the input is 4-D (N, C, H, W): shape[2:] is shape[-2:]"),
    (_DEEPLAB + "xǁASPPǁ__init__*", "cout: int = 257", "deeplab_head, the only caller, passes the channels"),
    (_DEEPLAB + "xǁASPPǁ__init__*", "dropout: float = 1.1", "deeplab_head, the only caller, passes the dropout"),
    (_DEEPLAB + "xǁBottleneckǁ__init__*", "stride: int = 2", "_layer passes every block's stride"),
    (_DEEPLAB + "xǁBottleneckǁ__init__*", "dilation: int = 2", "_layer passes every block's dilation"),
    (_DEEPLAB + "x*Backboneǁ__init__*", "width: float = 2.0", "the builders pass the options' width"),
    (_DEEPLAB + "xǁResNet50Backboneǁ_layer*", 'downsample = ""',
     "every stage's first block changes the width (64 -> 256, 256 -> 512, ...), so it always gets a projection"),
    (_DEEPLAB + "xǁResNet50Backboneǁ_layer*", "if stride == 1 or self.cin",
     "every stage's first block changes the width, so it gets a projection whatever its stride"),
    (_DEEPLAB + "xǁResNet50Backboneǁ_layer*", "if stride != 2 or self.cin",
     "every stage's first block changes the width, so it gets a projection whatever its stride"),
    (_DEEPLAB + "xǁResNet50Backboneǁ_layer*", "self.cin != planes / Bottleneck.expansion",
     "no stage's input width equals a quarter of its planes, as none equals four times them"),
    (_DEEPLAB + "xǁResNet50Backboneǁ__init__*", "self._layer(base, 3, 1, None)", "None is as false as False"),
    (_DEEPLAB + "xǁResNet50Backboneǁ__init__*", "self._layer(base * 2, 4, 2, None)", "None is as false as False"),
    (_DEEPLAB + "xǁResNet50Backboneǁ__init__*", "self._layer(base, 3, 1, True)",
     "dilating a stage of stride 1 multiplies the dilation by 1 and keeps stride 1: layer1 is the same"),
    (_DEEPLAB + "x__initialize_*", 'kaiming_normal_(m.weight, mode="fan_out", )',
     "the default nonlinearity, leaky ReLU with slope 0, has the gain of ReLU, sqrt(2)"),
    (_DEEPLAB + "x__initialize_*", '"FAN_OUT"', "torch lower-cases the mode"),
    (_DEEPLAB + "x_load_backbone_*", "strict=None", "None is as false as False: the head's tensors are not asked for"),
]
KNOWN_EQUIVALENT += [
    (_DEEPLAB + "xǁSmallBackboneǁ__init__*", text,
     "the small backbone's last two stages have the same width (SMALL_WIDTHS 64, 64): c[2] is c[3] at every width")
    for text in ("_conv_bn_relu(c[1], c[3], 3, stride=2)", "_conv_bn_relu(c[3], c[3], 3, stride=2) if",
                 "_conv_bn_relu(c[3], c[3], 3, dilation=2)", "self.aux_channels = c[3], c[3]")
]
KNOWN_EQUIVALENT += [  # evaluation/classification.py
    ("samat.empirical.evaluation.classification.xǁHitsǁ__init__*", "self.hits = ",
     "a placeholder: the evaluation loop calls clean() before anything else, which replaces it"),
]
_SEGMENTATION = "samat.empirical.evaluation.segmentation.xǁConfusionsǁ"
KNOWN_EQUIVALENT += [  # evaluation/segmentation.py
    (_SEGMENTATION + "__init__*", "self.natural = ",
     "a placeholder: the evaluation loop calls clean() before anything else, which replaces it"),
    (_SEGMENTATION + "clean*", "self.k, )",
     "the clean pass's batches only set its memory use: an image's prediction in eval mode does not depend on the "
     "other images of its batch"),
    (_SEGMENTATION + "attack*", " " * 26 + "loss=summed_pixel_loss)",
     "build_attack's box 'auto' is IMAGE_BOX for images (N, C, H, W)"),
    (_SEGMENTATION + "attack*", "PerturbationMeter(spec, )", "the meter's default box is IMAGE_BOX"),
    (_SEGMENTATION + "attack*", "on = idx.to(None)",
     "the batch's indices stay on the host: the same on a CPU, and a host index tensor indexes a CUDA tensor too "
     "(torch copies it to the device)"),
    (_SEGMENTATION + "attack*", "pred[j].to(None)",
     "the assignment into the uint8 canvas casts the predicted classes (< K <= 255) all the same"),
]

# Mutants that change only what happens on a CUDA device: (name glob, text of the mutated line, "" for any; why).
# A CPU run cannot tell them apart and leaves them out of its score; the tests marked gpu check them (python
# bench/mutation.py --gpu on a CUDA machine counts them as any other).
KNOWN_CUDA_ONLY = [
    ("samat.empirical.evaluation.classification.xǁHitsǁrestore*", text,
     "the restored masks made on the default device instead of the labels': the same one without CUDA")
    for text in ("unpack_mask(text, self.n, None)", "unpack_mask(text, self.n, )")
] + [
    ("samat.empirical.attacks.pixle.*_candidates_*", "dev = None",
     "every draw and index made on the default device instead of the images': the same one without CUDA"),
    ("samat.empirical.training.fast.xǁ_CapturedStepǁ*", "",
     "the CUDA graph's capture and replay (a CPU refuses cuda_graph=True before the run; the CPU tests replace "
     "the capture to follow FastStep's own logic)"),
] + [
    ("samat.empirical.training.fast.x__snapshot_*", text,
     "the CUDA generator's state, saved only for a run on CUDA (dropout's draws there)")
    for text in ("cuda_rng = None", 'if (device.type == "cuda") and False', "get_rng_state(None)",
                 'device.type == "XXcudaXX"', 'device.type == "CUDA"', "torch.get_rng_state(), None, device)",
                 "cuda_rng, None)")
] + [
    ("samat.empirical.training.fast.xǁFastStepǁ__call__*", text,
     "the synchronisation after the first full batch on CUDA, where an error of the graph's first launches shows")
    for text in ('x.device.type == "XXcudaXX"', 'x.device.type == "CUDA"', "torch.cuda.synchronize(None)")
]


def _without_device(line: str) -> str:
    return _TRAILING_COMMA.sub("", _DEVICE.sub("", line))


def classify(diff: str, name: str = "", gpu: bool = False) -> tuple[str, str]:
    """A survivor's class and why: ``equivalent`` (no input the code accepts behaves differently; left out of the
    score), ``cuda`` (only behaviour on a CUDA device changes: left out of the CPU score, listed apart; not on a
    run with ``gpu``, which runs the tests marked gpu), ``wording`` (only the text of a message changed) or
    ``untested``."""
    removed = [line[1:] for line in diff.splitlines() if line.startswith("-")]
    added = [line[1:] for line in diff.splitlines() if line.startswith("+")]
    for pattern, text, why in KNOWN_EQUIVALENT:
        if fnmatch.fnmatch(name, pattern) and any(text in x for x in added):
            return "equivalent", why
    if not gpu:
        for pattern, text, why in KNOWN_CUDA_ONLY:
            if fnmatch.fnmatch(name, pattern) and any(text in x for x in added):
                return "cuda", why
        if removed and [_without_device(x) for x in removed] == [_without_device(x) for x in added]:
            return "cuda", ("the device argument dropped or None: a tensor or generator made on the default device "
                            "instead of the input's, which is the same one on a machine without CUDA")
    if removed and [_DTYPE.sub(")", x) for x in removed] == [_DTYPE.sub(")", x) for x in added]:
        return "equivalent", ("dtype=float dropped, or np.finfo(None) (numpy's float64): for the floats and ints "
                              "the callers pass, the next operation promotes to float64 all the same")
    changed = {m for x in removed + added for m in _STRING.findall(x)} - (
        {m for x in removed for m in _STRING.findall(x)} & {m for x in added for m in _STRING.findall(x)})
    if (removed and [_STRING.sub('""', x) for x in removed] == [_STRING.sub('""', x) for x in added]
            and all(" " in m for m in changed)):  # prose, not a key or a name
        return "wording", "only the text of a message changes"
    return "untested", ""


def _checked(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run that fails in one line (the command and the last line it printed), not a traceback."""
    try:
        return subprocess.run(command, check=True, **kwargs)
    except subprocess.CalledProcessError as err:
        said = (err.stderr or err.stdout or "").strip().splitlines()
        raise SamatError(f"{' '.join(command[:4])} ... failed (exit {err.returncode})"
                         + (f": {said[-1]}" if said else "")) from None


def ensure_mutmut() -> None:
    """Install the pinned mutmut of the ``mutation`` extra into this interpreter's environment if it is missing."""
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["mutation"]
    if importlib.util.find_spec("mutmut") is None:
        print(f"installing {' '.join(pins)} (the mutation extra)", flush=True)
        _checked([sys.executable, "-m", "pip", "install", "-q", *pins])


# A pytest plugin loaded into every test run of a target (TARGET/plugins/fork_safety.py). mutmut runs the tests once
# in its own process, then forks a worker per mutant from it: nothing that process started may hold a lock that a
# worker needs, since the threads that would release it are not forked with it (the worker then waits forever, and
# mutmut counts a timeout: "detected").
FORK_SAFETY = '''"""Written by bench/mutation.py: no forked worker of mutmut may wait on the parent's locks."""

import os
import threading


def pytest_configure(config):
    # tqdm's bars share a multiprocessing lock (a semaphore across processes): a lock of this process instead
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


def pytest_sessionfinish(session, exitstatus):
    # textattack sets TOKENIZERS_PARALLELISM=True when imported; so set, the tokenizers library keeps its thread pool
    # on in a forked worker, whose batch encodings then wait for the parent's pool threads. Off: the same tokens.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
'''


def prepare(name: str, target: Target, fresh: bool, gpu: bool = False) -> Path:
    """The target's folder: links to the code and tests, and pyproject.toml with its [tool.mutmut] table."""
    folder = WORK / name
    if fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for entry in (*PACKAGES, "tests"):
        link = folder / entry
        if not link.exists():
            link.symlink_to(REPO / entry, target_is_directory=True)
    table = {
        # every package is copied (a package must be whole in mutants/), only the target's module is mutated
        "source_paths": list(PACKAGES),
        "only_mutate": [target.path],
        "pytest_add_cli_args_test_selection": list(target.tests),
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-p", "no:randomly", "-p", "fork_safety"]
        + (["--run-gpu"] if gpu else []),
        "use_git_change_detection": False,
        "debug": False,
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    text = (REPO / "pyproject.toml").read_text().rstrip("\n") + "\n" + "\n".join(lines) + "\n"
    (folder / "pyproject.toml").write_text(text)
    (folder / "plugins").mkdir(exist_ok=True)  # not the folder itself: mutmut takes that off the path
    (folder / "plugins" / "fork_safety.py").write_text(FORK_SAFETY)
    return folder


def mutmut(folder: Path, *args: str, log: Path | None = None, heartbeat: str = "") -> str:
    """Run ``python -m mutmut ARGS`` in ``folder`` (one thread per process: mutmut forks a worker per mutant; the
    fork_safety plugin is on the path)."""
    path = os.pathsep.join([str((folder / "plugins").resolve()), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
                        "TOKENIZERS_PARALLELISM": "false", "PYTHONDONTWRITEBYTECODE": "1", "NO_COLOR": "1",
                        "PYTHONPATH": path}
    command = [sys.executable, "-m", "mutmut", *args]
    if log is None:
        return _checked(command, cwd=folder, env=env, capture_output=True, text=True).stdout
    with log.open("w") as out:
        # its own process group, so that stopping this script (Ctrl-C, SIGTERM) also stops mutmut's forked workers
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            start = time.monotonic()
            while process.poll() is None:
                time.sleep(2)
                if time.monotonic() - start >= 60:  # a progress line a minute, terminal or not
                    start = time.monotonic()
                    print(f"  {heartbeat}: {last_progress(log)}", flush=True)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait()
    if process.returncode != 0:
        raise SystemExit(f"mutmut failed on {heartbeat} (exit {process.returncode}); see {log}")
    return log.read_text()


_PROGRESS = re.compile(r"(\d+/\d+)\s+🎉 (\d+) 🫥 (\d+)\s+⏰ (\d+)\s+🤔 (\d+)\s+🙁 (\d+)")


def last_progress(log: Path) -> str:
    found = _PROGRESS.findall(log.read_text(errors="replace"))
    if not found:
        return "collecting the tests' coverage"
    done, killed, untested, timeout, suspicious, survived = found[-1]
    return (f"{done} mutants: {killed} killed, {survived} survived, {timeout} timed out, {untested} not covered, "
            f"{suspicious} suspicious")


def run_target(name: str, target: Target, children: int, fresh: bool, gpu: bool = False) -> dict:
    folder = prepare(name, target, fresh, gpu)
    start = time.monotonic()
    mutmut(folder, "run", "--max-children", str(children), *target.patterns, log=folder / "run.log",
           heartbeat=name)
    seconds = time.monotonic() - start
    statuses = {}
    for line in mutmut(folder, "results", "--all", "true").splitlines():
        key, _, status = line.strip().rpartition(": ")
        if key and any(fnmatch.fnmatch(key, p) for p in target.patterns):
            statuses[key] = status
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    diffs = diffs_of(folder, [key for key, status in statuses.items() if status not in DETECTED])
    survivors = [{"mutant": key, "status": status, "diff": diffs[key]}
                 for key, status in sorted(statuses.items(), key=lambda kv: _natural(kv[0])) if status not in DETECTED]
    result = {"target": name, "module": target.path, "functions": list(target.functions), "tests": list(target.tests),
              "gpu": gpu, "mutants": len(statuses), "killed": counts.get("killed", 0),
              "timeout": counts.get("timeout", 0), "survived": counts.get("survived", 0),
              "other": {s: c for s, c in counts.items() if s not in ("killed", "timeout", "survived")},
              "detected": sum(counts.get(s, 0) for s in DETECTED), "seconds": round(seconds, 1),
              "survivors": survivors}
    return scored(result)


def scored(result: dict) -> dict:
    """``result`` with each survivor classified (:func:`classify`) and the counts and score that follow: the score
    is detected / (mutants - equivalent - CUDA-only), the CPU score where the run did not run the GPU tests."""
    for s in result["survivors"]:
        s["class"], s["why"] = classify(s["diff"], s["mutant"], result.get("gpu", False))
    for kind in ("equivalent", "cuda", "wording"):
        result[kind] = sum(s["class"] == kind for s in result["survivors"])
    counted = result["mutants"] - result["equivalent"] - result["cuda"]
    result["score"] = result["detected"] / counted if counted > 0 else None
    return result


def _natural(key: str) -> tuple:
    stem, _, number = key.rpartition("__mutmut_")
    return stem, int(number) if number.isdigit() else 0


_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant
print(json.dumps({k: get_diff_for_mutant(k, path=find_mutant(k).path) for k in sys.argv[1:]}))
"""


def diffs_of(folder: Path, keys: list[str]) -> dict[str, str]:
    """The mutants as diffs, without the file header lines: mutmut's own diff (what ``mutmut show`` prints), in one
    process rather than one ``mutmut show`` each (seconds apiece on a busy machine)."""
    if not keys:
        return {}
    out = _checked([sys.executable, "-c", _DIFFS, *keys], cwd=folder, capture_output=True, text=True)
    return {k: "\n".join(line for line in text.splitlines()
                         if line.startswith(("+", "-")) and not line.startswith(("+++", "---")))
            for k, text in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def table(results: list[dict]) -> str:
    """Per module; the score is (killed + timed out) / (mutants - equivalent - CUDA-only survivors)."""
    rows = ["| module | mutants | killed | timeout | survived (equivalent, CUDA only, wording, untested) | other | "
            "score | time |", "|---" * 8 + "|"]
    for r in results:
        other = ", ".join(f"{c} {s}" for s, c in r["other"].items()) or "-"
        score = f"{100 * r['score']:.1f} %" if r["score"] is not None else "-"
        untested = len(r["survivors"]) - r["equivalent"] - r["cuda"] - r["wording"]
        rows.append(f"| {r['module']} | {r['mutants']} | {r['killed']} | {r['timeout']} | {len(r['survivors'])} "
                    f"({r['equivalent']}, {r['cuda']}, {r['wording']}, {untested}) | {other} | {score} | "
                    f"{r['seconds']:.0f} s |")
    return "\n".join(rows)


def survivors_text(results: list[dict], markdown: bool) -> str:
    parts = []
    for r in results:
        for s in r["survivors"]:
            name = s["mutant"].removeprefix(r["module"].removesuffix(".py").replace("/", ".") + ".")
            label = f"{s['status']}, {s['class']}" + (f": {s['why']}" if s["why"] else "")
            if markdown:
                parts.append(f"- `{r['target']}: {name}` ({label})\n\n  ```diff\n" +
                             "\n".join("  " + line for line in s["diff"].splitlines()) + "\n  ```")
            else:
                parts.append(f"{r['target']}: {name} ({label})\n" +
                             "\n".join("    " + line for line in s["diff"].splitlines()))
    return "\n".join(parts) if parts else "(none)"


def classify_again(path: Path) -> int:
    """The table and survivors of an earlier run's record, its survivors classified with today's lists."""
    try:
        record = json.loads(path.read_text())
        results = [scored(r) for r in record["targets"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SamatError(f"{path} is not a record of bench/mutation.py --json ({type(err).__name__}: {err})") from None
    print(f"{record['command']} (load average {record['machine']['load_average_before']:.1f} before, "
          f"{record['machine']['load_average_after']:.1f} after; wall time {record['wall_seconds']:.0f} s)")
    print(table(results))
    print()
    print("Survivors (not killed, not timed out):")
    print(survivors_text(results, markdown=False))
    return 0


def mutated_tree() -> dict:
    """The commit of the tree whose code is mutated and tested (this script's checkout), and whether it had
    uncommitted changes. ``host()`` records the checkout samat is imported from, which is another one where the
    environment's editable install points elsewhere (a second git worktree)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(TARGETS) + sorted(GROUPS), metavar="NAME",
                        help=f"a target ({', '.join(TARGETS)}) or group ({', '.join(GROUPS)}); repeatable")
    parser.add_argument("--max-children", type=count(1), default=os.cpu_count() or 1,
                        help="mutants tested at once (default: the CPU count)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the results of an earlier run in .mutation/ (default: start fresh)")
    parser.add_argument("--gpu", action="store_true", help="also run the tests marked gpu (on a CUDA machine)")
    parser.add_argument("--json", type=output_file, help="also write the figures and survivors to this JSON file")
    parser.add_argument("--markdown", type=output_file, help="also write them as markdown to this file")
    parser.add_argument("--classify", type=Path, metavar="JSON",
                        help="run nothing: classify again the survivors of an earlier run's --json file with this "
                             "script's lists of equivalent and CUDA-only mutants, and print its table")
    args = parser.parse_args()
    if args.classify is not None:
        return classify_again(args.classify)
    names = [n for choice in (args.only or list(GROUPS)) for n in GROUPS.get(choice, [choice])]
    names = list(dict.fromkeys(names))
    ensure_mutmut()
    from importlib.metadata import version

    info = host() | {"git": mutated_tree(), "mutmut": version("mutmut"), "max_children": args.max_children}
    print(f"mutmut {info['mutmut']}, {args.max_children} workers, targets: {', '.join(names)} "
          f"(load average {info['load_average_before']:.1f} on {info['cpus']} CPUs)", flush=True)
    start = time.monotonic()
    results = []
    for name in names:
        print(f"{name}: {TARGETS[name].path} against {' '.join(TARGETS[name].tests)}", flush=True)
        results.append(run_target(name, TARGETS[name], args.max_children, fresh=not args.resume, gpu=args.gpu))
        r = results[-1]
        print(f"{name}: {r['mutants']} mutants, {r['detected']} detected, {len(r['survivors'])} not "
              f"({r['seconds']:.0f} s)", flush=True)
    wall = time.monotonic() - start
    info |= {"load_average_after": os.getloadavg()[0]}
    print()
    print(table(results))
    print()
    print("Survivors (not killed, not timed out):")
    print(survivors_text(results, markdown=False))
    print(f"\nwall time {wall:.0f} s (load average {info['load_average_before']:.1f} before, "
          f"{info['load_average_after']:.1f} after, {info['cpus']} CPUs)")
    record = {"command": "python bench/mutation.py " + " ".join(sys.argv[1:]), "machine": info,
              "wall_seconds": round(wall, 1), "targets": results}
    if args.json:
        write_record(args.json, record)
    if args.markdown:
        atomic_write_text(args.markdown, f"Command: `{record['command'].strip()}`; mutmut {info['mutmut']}; wall "
                          f"time {wall:.0f} s; load average {info['load_average_before']:.1f} on {info['cpus']} "
                          f"CPUs.\n\n{table(results)}\n\nSurvivors:\n\n{survivors_text(results, markdown=True)}\n")
    return 0


if __name__ == "__main__":
    run(main)
