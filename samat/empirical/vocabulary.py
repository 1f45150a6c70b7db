"""The fixed vocabularies of the empirical side, typed: methods, norms, tasks, datasets, architectures,
augmentations, learning-rate schedules.

Each vocabulary is one StrEnum, and each member carries what the rest of the code needs to know about it
(its readable display name and, for methods, how it trains), so that adding a member is one line here plus the code
that is genuinely new (a loader, a network, a training step). The values are the spellings of the
configuration files and the command line ("sam", "linf", "fashion_mnist", "prn18"); members compare equal to
them and are written to JSON as them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from samat.core.errors import ParameterError


class _Vocabulary(StrEnum):
    """A StrEnum whose members carry a readable ``display`` name (and more, per vocabulary)."""

    display: str  # the readable name, for tables and figures

    def __new__(cls, value: str, display: str, *extra: Any):
        member = str.__new__(cls, value)
        member._value_ = value
        member.display = display
        member._init_extra(*extra)
        return member

    def _init_extra(self, *extra: Any) -> None:
        if extra:
            raise TypeError(f"{type(self).__name__} takes no fields besides the display name")

    @classmethod
    def parse(cls, value: Any, name: str):
        """The member spelled ``value`` (case and '-' vs '_' do not matter), or a ParameterError naming ``name``
        and listing the choices."""
        if isinstance(value, cls):
            return value
        key = str(value).strip().lower().replace("-", "_") if isinstance(value, str) else None
        for member in cls:
            if key == member.value or key in member.aliases():
                return member
        raise ParameterError(name, value, "one of " + ", ".join(m.value for m in cls))

    def aliases(self) -> tuple[str, ...]:
        return ()

    @classmethod
    def choices(cls) -> str:
        return ", ".join(m.value for m in cls)


class Ascent(StrEnum):
    """How a method perturbs the weights before its gradient step (the SAM family), if at all."""

    NONE = "none"
    GRADIENT = "gradient"  # SAM: e = ρ g / ||g|| (Foret et al. 2021; W eq. 1, D eq. 4)
    ADAPTIVE = "adaptive"  # ASAM: e = ρ T² g / ||T g||, T = |w| + η (Kwon et al. 2021)
    STOCHASTIC = "stochastic"  # ESAM: SAM's e on a random fraction β of the weights, and the second gradient on
    # the fraction γ of the batch whose loss rises most (Du et al. 2022)


class Method(_Vocabulary):
    """Training methods. Fields: display name, the default base optimizer, the weight ascent, adversarial inputs."""

    #        value       display     optimizer  ascent             adversarial
    SGD = "sgd", "SGD", "sgd", Ascent.NONE, False
    ADAM = "adam", "Adam", "adam", Ascent.NONE, False
    SAM = "sam", "SAM", "sgd", Ascent.GRADIENT, False
    ASAM = "asam", "ASAM", "sgd", Ascent.ADAPTIVE, False
    ESAM = "esam", "ESAM", "sgd", Ascent.STOCHASTIC, False
    PGD_AT = "pgd_at", "PGD-AT", "sgd", Ascent.NONE, True
    ADAMW = "adamw", "AdamW", "adamw", Ascent.NONE, False  # D Table 10's ST (SAM: method sam, base_optimizer adamw)

    optimizer: str
    ascent: Ascent
    adversarial: bool

    def _init_extra(self, optimizer: str, ascent: Ascent, adversarial: bool) -> None:
        self.optimizer, self.ascent, self.adversarial = optimizer, ascent, adversarial

    @property
    def sharpness_aware(self) -> bool:
        """A member of the SAM family (it perturbs the weights, so ρ matters)."""
        return self.ascent is not Ascent.NONE


class Optimizer(_Vocabulary):
    """Base optimizers (the papers' settings: SGD lr 0.1, momentum 0.9, wd 5e-4; Adam lr 1e-3; AdamW lr 5e-5 for
    fine-tuning a transformer, D Section 5.3)."""

    SGD = "sgd", "SGD", 0.1
    ADAM = "adam", "Adam", 1e-3
    ADAMW = "adamw", "AdamW", 5e-5

    default_lr: float

    def _init_extra(self, default_lr: float) -> None:
        self.default_lr = default_lr


class Norm(_Vocabulary):
    """How a perturbation is measured. Fields: display name ("ℓ∞"), AutoAttack's spelling ("Linf")."""

    LINF = "linf", "ℓ∞", "Linf"
    L2 = "l2", "ℓ2", "L2"
    L0 = "l0", "ℓ0", None  # number of changed pixel positions (Pixle rearranges pixels; it has no budget)
    FLOW = "flow", "flow", None  # largest per-axis displacement of StAdv's flow field, in pixels
    WORDS = "words", "words", None  # word substitutions (TextAttack's recipes bound them by their constraints)

    autoattack: str | None

    def _init_extra(self, autoattack: str | None) -> None:
        self.autoattack = autoattack

    def aliases(self) -> tuple[str, ...]:
        return (self.display.lower(),) + ((self.autoattack.lower(),) if self.autoattack else ())


THREAT_NORMS = (Norm.LINF, Norm.L2)  # the budgets of PGD and adversarial training
MAX_STEPS = 10_000  # the most iterations an attack (or adversarial training's PGD) may take: beyond, a typo


class Task(_Vocabulary):
    """What a model predicts: one class per example, or one class per pixel. Field: the score it is measured by."""

    CLASSIFICATION = "classification", "image classification", "accuracy"
    SEGMENTATION = "segmentation", "semantic segmentation", "mIoU"  # D Section 5.2, eq. (15)
    TEXT = "text", "text classification", "accuracy"  # D Section 5.3: attacks scored by their success rate

    metric: str

    def _init_extra(self, metric: str) -> None:
        self.metric = metric


class DatasetName(_Vocabulary):
    """The datasets samat loads by name (a Dataset built in code may carry any other name); field: the task."""

    CIFAR10 = "cifar10", "CIFAR-10"
    CIFAR100 = "cifar100", "CIFAR-100"
    FASHION_MNIST = "fashion_mnist", "Fashion-MNIST"
    TINYIMAGENET = "tinyimagenet", "TinyImageNet"
    GAUSSIAN = "gaussian", "Gaussian model D(p, η, n)"
    FASHION_SCENES = "fashion_scenes", "Fashion-MNIST scenes", Task.SEGMENTATION
    STANFORD_BACKGROUND = "stanford_background", "Stanford Background", Task.SEGMENTATION
    VOC2012 = "voc2012", "PASCAL VOC 2012", Task.SEGMENTATION
    ROTTEN_TOMATOES = "rotten_tomatoes", "Rotten Tomatoes", Task.TEXT  # D Table 10 (Pang and Lee 2005)
    GENERATED_REVIEWS = "generated_reviews", "generated reviews (not real data)", Task.TEXT  # the CPU default

    task: Task

    def _init_extra(self, task: Task = Task.CLASSIFICATION) -> None:
        self.task = task


class Architecture(_Vocabulary):
    """The networks samat builds by name; ``vectors``: whether it also takes (N, D) vector inputs; ``task``."""

    PRN18 = "prn18", "PreActResNet-18", False
    WRN28_10 = "wrn28_10", "WideResNet-28-10", False
    DEIT_TINY = "deit_tiny", "DeiT-Tiny", False
    SMALL_CNN = "small_cnn", "small CNN", False
    LINEAR = "linear", "linear", True
    DEEPLABV3_RESNET50 = "deeplabv3_resnet50", "DeepLabv3 (ResNet-50)", False, Task.SEGMENTATION
    DEEPLABV3_MOBILENETV2 = "deeplabv3_mobilenetv2", "DeepLabv3 (MobileNetV2)", False, Task.SEGMENTATION
    DEEPLABV3_SMALL = "deeplabv3_small", "DeepLabv3 (small CNN)", False, Task.SEGMENTATION  # CPU runs
    # a Hugging Face AutoModelForSequenceClassification, named (or in a folder) by the configuration's text.model
    TRANSFORMER = "transformer", "Transformer", False, Task.TEXT

    vectors: bool
    task: Task

    def _init_extra(self, vectors: bool, task: Task = Task.CLASSIFICATION) -> None:
        self.vectors, self.task = vectors, task


class Augment(_Vocabulary):
    """Training augmentation of image batches, on the device."""

    NONE = "none", "none"
    CROP = "crop", "random crop (4 px reflect padding)"
    CROP_FLIP = "crop_flip", "random crop and horizontal flip"
    # image and mask together: random scale, crop (padded with the ignore label) and flip (segmentation only)
    SCALE_CROP_FLIP = "scale_crop_flip", "random scale, crop and horizontal flip of image and mask"


class LrSchedule(_Vocabulary):
    """How the learning rate falls over training, set every iteration from the fraction t of training done."""

    STEP = "step", "divided by lr_decay at each of lr_milestones"  # the papers' classification runs
    POLY = "poly", "polynomial decay (1 - t)^lr_power"  # DeepLab's schedule (D Section 5.2)
    # transformers' get_linear_schedule_with_warmup, what its Trainer uses by default (D Section 5.3)
    LINEAR = "linear", "linear warm-up over warmup_ratio of the steps, then linear decay to 0"


class SamGradients(_Vocabulary):
    """Which gradient SAM's ascent uses when data-parallel (world size > 1)."""

    ALLREDUCE = "allreduce", "the global batch's gradient (as one process)"
    LOCAL = "local", "each replica's own gradient (m-sharpness)"


class AtFeatures(_Vocabulary):
    """Which input coordinates adversarial training perturbs."""

    ALL = "all", "all features"
    NON_ROBUST = "non_robust", "the non-robust features x2..x_{n+1} (the papers' AT on the Gaussian model)"
