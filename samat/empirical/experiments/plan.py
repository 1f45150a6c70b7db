"""``samat experiment plan``: the device time of every run of a grid (training and evaluation) and of the whole
grid, predicted on this device from a short calibration, before anything trains.

Training. Each distinct step of the grid (architecture, method, batch, PGD steps, input shape) runs a few
warm-up and a few timed steps on synthetic data of the dataset's shape, exactly as ``train()`` runs them
(:func:`samat.empirical.training.throughput.time_steps`: on CUDA compiled and graphed, on a CPU eager); the epoch's test
pass is timed too. A run costs ``epochs x (steps per epoch x seconds per step + test pass)`` plus what the warm-up
took beyond its steps (compilation, CUDA-graph capture), once. On a CPU, where the arithmetic dominates and a
step's cost is linear in the batch, the steps are timed on a smaller batch and scaled.

Evaluation. Every attack the evaluation runs (the columns, then its sanity attacks; see
:func:`samat.empirical.evaluation.evaluate.attacks_run`) is timed on a few full batches of the evaluation's batch size
on two models that bound its cost (:mod:`samat.empirical.evaluation.cost`): one whose images fall at once and one whose
images never fall. A run's evaluation lies between the two; the papers' adversarially trained models sit near the
upper end. FGSM and PGD cost the same at any budget (they run all their steps), so each is timed once per norm
and step count.

Text (D Table 10). Training is timed as for images, on batches of token ids as long as the run's batches are (from
the dataset when it is here, else an assumption the plan states), with the run's model, or where its weights are
not here a randomly initialized network of its architecture (the cost depends on the shape only). Each TextAttack
recipe is timed sentence by sentence against two models that bound its search (:mod:`empirical.evaluation.text_cost`):
PSO queries the model thousands of times per sentence where no substitution succeeds. The calibration sentences
and resources are the run's where they are here; else the generated corpus and stand-ins for TextAttack's resources,
the time per sentence scaled by the run's words per sentence, and the plan says so.
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from samat.core.errors import SamatError
from samat.empirical.attacks.specs import GRADIENT_ALGORITHMS, AttackSpec
from samat.empirical.data import DataShape, TextDataset, data_shape, load_dataset
from samat.empirical.evaluation.cost import BOUNDS, calibration_images, calibration_model, time_attack
from samat.empirical.evaluation.evaluate import attacks_run
from samat.empirical.evaluation.text_cost import TextAttackCost, time_recipe
from samat.empirical.experiments.grid import Experiment, RunSpec
from samat.empirical.models import build_model
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.runs import RunDir
from samat.empirical.training.setup import build
from samat.empirical.training.throughput import StepTiming, synthetic_images, time_steps, time_test_pass
from samat.empirical.vocabulary import Task

EVAL_BATCH = 256  # the evaluation's attack batch (empirical.evaluation.run.evaluate_path's default)
CPU_BATCH = 8  # a CPU first times a step on this batch, an attack on CPU_IMAGES images (see _at_size)
CPU_IMAGES = 1
AFFORDABLE_SECONDS = 4.0  # on a CPU, a larger size is measured while its estimate stays under this (_at_size)

Log = Callable[[str], None]


@dataclass(frozen=True)
class Calibration:
    """How long the calibration runs: ``warmup`` untimed and ``steps`` timed training steps per distinct step,
    and ``eval_batches`` batches per attack and bound."""

    warmup: int = 2
    steps: int = 5
    eval_batches: int = 2

    @classmethod
    def for_device(cls, device: torch.device) -> Calibration:
        return cls() if device.type == "cuda" else cls(warmup=1, steps=2, eval_batches=1)


def _at_size(measure: Callable[[int], float], small: int, full: int, cuda: bool) -> tuple[float, int]:
    """Seconds of something at size ``full`` (a batch, a test split), and the largest size it was measured at.

    On CUDA it is measured at ``full``: a batch runs in parallel, so its cost is not proportional to its size.
    On a CPU the cost is a fixed part (Python, dispatch, an attack's per-iteration overhead) plus a part
    proportional to the size (the arithmetic). It is measured at ``small``, then at four (else two) times the
    size, and so on up to ``full``, while the next measurement stays affordable: its proportional estimate, an
    upper bound, under AFFORDABLE_SECONDS. Measured at ``full``, that figure stands; else the line through the
    last two measurements gives ``full``'s (its slope not below 0); with one measurement only (already dear at
    ``small``, where the arithmetic dominates) its proportional estimate does."""
    if cuda or small >= full:
        return measure(full), full
    points = [(small, measure(small))]
    while points[-1][0] < full:
        size, seconds = points[-1]
        bigger = [n for n in (min(full, 4 * size), min(full, 2 * size)) if seconds * n / size <= AFFORDABLE_SECONDS]
        if not bigger:
            break
        points.append((bigger[0], measure(bigger[0])))
    size, seconds = points[-1]
    if size == full:
        return seconds, full
    if len(points) == 1:
        return seconds * full / size, size
    (s1, t1), (s2, t2) = points[-2:]
    return t2 + max(0.0, (t2 - t1) / (s2 - s1)) * (full - s2), size


@dataclass(frozen=True)
class TrainingCost:
    """A step and the epoch's test pass at the run's sizes, and the one-time warm-up overhead."""

    batch_size: int  # the run's
    step_seconds: float  # at the run's batch
    test_seconds: float
    overhead_seconds: float
    timing: StepTiming  # the last measurement (on a CPU possibly on a smaller batch)

    def run_seconds(self, epochs: int, steps_per_epoch: int) -> float:
        return epochs * (steps_per_epoch * self.step_seconds + self.test_seconds) + self.overhead_seconds


@dataclass(frozen=True)
class AttackCost:
    """An attack's seconds per evaluation batch (EVAL_BATCH images) against each bound, and the batch it was
    measured at."""

    batch_seconds: dict[str, float]
    measured_batch: int

    def seconds_for(self, n: int, bound: str) -> float:
        return math.ceil(n / EVAL_BATCH) * self.batch_seconds[bound]

    def summary(self, low: str, high: str) -> str:
        scaled = (f" (timed on {self.measured_batch} images per batch, scaled)" if self.measured_batch != EVAL_BATCH
                  else "")
        return f"{_span(self.seconds_for(1000, low), self.seconds_for(1000, high))} per 1,000 images{scaled}"


@dataclass
class RunPlan:
    label: str
    seeds: int
    finished: int  # seeds already finished
    epochs: int
    train_seconds: float  # per seed
    eval_seconds: dict[str, float]  # per seed, by bound

    def total(self, bound: str, remaining: bool = False) -> float:
        n = self.seeds - self.finished if remaining else self.seeds
        return n * (self.train_seconds + self.eval_seconds.get(bound, 0.0))


@dataclass
class GridPlan:
    experiment: Experiment
    device: str
    runs: list[RunPlan]
    training: dict[str, TrainingCost] = field(default_factory=dict)  # by a readable description of the step
    attacks: dict[str, AttackCost | TextAttackCost] = field(default_factory=dict)  # by attack label
    calibration_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # what the calibration stood in for (text: weights, data)

    def total(self, bound: str, remaining: bool = False) -> float:
        return sum(r.total(bound, remaining) for r in self.runs)


def _shape(cfg: TrainConfig) -> DataShape:
    full = data_shape(cfg.dataset, cfg.gaussian_spec)
    return DataShape(min(cfg.train_subset or full.train, full.train), min(cfg.test_subset or full.test, full.test),
                     full.input_shape, full.num_classes)


def _step_key(cfg: TrainConfig, shape: DataShape) -> str:
    """What a step's cost depends on, readably: architecture, input, method, batch (and PGD's steps)."""
    method = cfg.method.display + (f" ({cfg.at_steps} PGD steps)" if cfg.method.adversarial else "")
    return f"{cfg.model.display} {'x'.join(map(str, shape.input_shape))}, {method}, batch {cfg.batch_size}"


def _attack_key(s: AttackSpec) -> tuple:
    """Attacks of the same cost: FGSM and PGD run all their steps whatever the budget."""
    return (s.algorithm, s.norm, s.steps) if s.algorithm in GRADIENT_ALGORITHMS else (s,)


def calibrate_training(cfg: TrainConfig, shape: DataShape, device: torch.device, cal: Calibration,
                       notice: Log | None = None) -> TrainingCost:
    """Time the run's step and its epoch's test pass (see :func:`_at_size`). Each measurement compiles afresh,
    as a run does: dynamo's compiled code is reset before it, so that the models and batch sizes calibrated before
    neither pile up entries in its cache (after ``torch._dynamo.config.recompile_limit`` of them it would run the
    model eagerly, without a word, and the figure would be eager's) nor spare this one its compilation.
    ``notice``: where a line saying the fast path is off goes."""
    cuda = device.type == "cuda"
    augment = cfg.augment or ("crop_flip" if len(shape.input_shape) == 3 else "none")
    timings: list[StepTiming] = []

    def step(batch: int) -> float:
        data = synthetic_images(batch * (cal.warmup + cal.steps), 1, shape.input_shape, shape.num_classes,
                                augment=augment)
        torch._dynamo.reset()
        timings.append(time_steps(_calibration_config(cfg, device, batch), data, warmup=cal.warmup,
                                  steps=cal.steps, notice=notice))
        return timings[-1].seconds_per_step

    def test_pass(n: int) -> float:
        data = synthetic_images(1, n, shape.input_shape, shape.num_classes, augment=augment)
        return time_test_pass(build(_calibration_config(cfg, device, cfg.batch_size, eager=True), data), n)

    step_seconds, _ = _at_size(step, min(cfg.batch_size, CPU_BATCH), cfg.batch_size, cuda)
    n_test = min(shape.test, cfg.eval_batch_size)
    test_seconds, _ = _at_size(test_pass, min(n_test, 4 * CPU_BATCH), n_test, cuda)
    test_seconds *= math.ceil(shape.test / cfg.eval_batch_size)  # n_test is one evaluation batch
    timing = timings[-1]
    overhead = max(0.0, timing.warmup_seconds - cal.warmup * timing.seconds_per_step)
    return TrainingCost(cfg.batch_size, step_seconds, test_seconds, overhead, timing)


def _calibration_config(cfg: TrainConfig, device: torch.device, batch: int, eager: bool = False) -> TrainConfig:
    """The run's configuration on ``device`` at another batch, on the data passed in (nothing is loaded)."""
    extra = dict(compile=False, cuda_graph=False) if eager else {}
    return cfg.replace(device=str(device), batch_size=batch, data_dir=None, train_subset=None, test_subset=None,
                       **extra)


def calibrate_attack(label: str, s: AttackSpec, cfg: TrainConfig, shape: DataShape, device: torch.device,
                     cal: Calibration, log: Log) -> AttackCost:
    """The attack timed on ``cal.eval_batches`` batches against both bounds, on random images of the dataset's
    shape (see :func:`_at_size`)."""
    cuda, seconds, measured = device.type == "cuda", {}, EVAL_BATCH

    def per_batch(bound: str, batch: int) -> float:
        model = calibration_model(cfg.model, shape.input_shape, shape.num_classes, device, bound=bound)
        x, y = calibration_images(model, cal.eval_batches * batch, shape.input_shape, device, bound=bound)
        t = time_attack(label, s, model, x, y, num_classes=shape.num_classes, batch_size=batch)
        return t.seconds / cal.eval_batches

    for bound in BOUNDS:
        seconds[bound], measured = _at_size(functools.partial(per_batch, bound), CPU_IMAGES, EVAL_BATCH, cuda)
        log(f"  {label}, {bound}: {seconds[bound]:.2f} s per batch of {EVAL_BATCH}"
            + (f" (timed on {measured} images, scaled)" if measured != EVAL_BATCH else ""))
    return AttackCost(seconds, measured)


def plan_experiment(exp: Experiment, device: torch.device, *, calibration: Calibration | None = None,
                    log: Log = lambda m: None) -> GridPlan:
    """Calibrate on ``device`` and predict every run's training and evaluation time (see the module)."""
    cal = calibration or Calibration.for_device(device)
    if exp.task is Task.TEXT:
        return plan_text(exp, device, cal, log)
    said: set[str] = set()

    def notice(message: str) -> None:  # once per message, not once per calibrated step
        if message not in said:
            said.add(message)
            log(message)

    t0 = time.perf_counter()
    plan = GridPlan(exp, torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU", [])
    steps: dict[str, TrainingCost] = {}
    specs = attacks_run(exp.attacks) if exp.attacks else {}
    timed: dict[tuple, AttackCost] = {}
    for label in exp.labels:
        runs: list[RunSpec] = exp.runs_for(label)
        cfg = runs[0].config
        shape = _shape(cfg)
        key = _step_key(cfg, shape)
        if key not in steps:
            log(f"calibrating training: {key}")
            steps[key] = calibrate_training(cfg, shape, device, cal, notice)
        eval_seconds = {b: 0.0 for b in BOUNDS} if specs else {}
        n_eval = min(exp.n_eval, shape.test)
        for attack_label, s in specs.items():
            akey = (_attack_key(s), cfg.model, shape.input_shape, shape.num_classes)
            if akey not in timed:
                log(f"calibrating evaluation: {attack_label} on {cfg.model.display}")
                timed[akey] = calibrate_attack(attack_label, s, cfg, shape, device, cal, log)
            plan.attacks.setdefault(attack_label, timed[akey])
            for bound in BOUNDS:
                eval_seconds[bound] += timed[akey].seconds_for(n_eval, bound)
        cost = steps[key]
        per_epoch = math.ceil(shape.train / cfg.batch_size)
        finished = sum(RunDir(r.run_dir).finished for r in runs)
        plan.runs.append(RunPlan(label, len(runs), finished, cfg.epochs, cost.run_seconds(cfg.epochs, per_epoch),
                                 eval_seconds))
    plan.training = steps
    plan.calibration_seconds = time.perf_counter() - t0
    return plan


# Sentences the text calibration attacks per recipe and bound (IGA takes seconds per sentence on a CPU)
TEXT_SENTENCES = {"cuda": 3, "cpu": 1}
# Where a text dataset is not here: its sizes and words per sentence (Rotten Tomatoes: the datasets library's split;
# 20 words on average, Kim 2014, Table 1), and the tokens per batch assumed for training
TEXT_SHAPES = {"rotten_tomatoes": ({"train": 8530, "validation": 1066, "test": 1066}, 20.0)}
ASSUMED_BATCH_TOKENS = 64


@dataclass(frozen=True)
class _TextWorld:
    """What the text calibration runs on: the model (its location), a tokenizer, sentences, their source, and the
    sizes and words per sentence of the run's dataset."""

    model: str
    tokenizer: Any
    texts: list[str]
    sizes: dict[str, int]
    words: float
    batch_tokens: float  # the mean length of the run's batches (the longest sentence of each)
    notes: list[str]


def _text_world(cfg: TrainConfig, folder: Path, log: Log) -> _TextWorld:
    """The run's model, data and TextAttack's resources where they are here, else stand-ins (said in ``notes``)."""
    from samat.empirical.data.text.generated import generate, vocabulary
    from samat.empirical.models.transformer import load_tokenizer, model_config, write_tiny_model

    notes = []
    spec = cfg.text_spec
    try:
        model_config(spec.model)
        model, tokenizer = spec.model, load_tokenizer(spec.model, spec.max_length)
    except SamatError:
        model, tokenizer = _architecture_stand_in(spec.model, folder), None
        notes.append(f"{spec.model}'s weights are not here: timed on a randomly initialized network of its "
                     "architecture (the same cost)")
    try:
        corpus = load_dataset(cfg.dataset, cfg.data_dir)
        real = tokenizer is not None
    except SamatError:
        corpus, real = None, False
    if corpus is not None and real:
        texts = _typical(list(corpus.texts["test"]))
        sizes = corpus.sizes()
        words = sum(len(t.split()) for t in texts) / len(texts)
        lengths = torch.tensor([len(t) for t in tokenizer(list(corpus.texts["train"]), truncation=True,
                                                         max_length=spec.max_length)["input_ids"]])
        order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0))
        batches = lengths[order].split(cfg.batch_size)
        batch_tokens = float(torch.stack([b.max() for b in batches]).double().mean())
        source = f"{corpus.name}'s test sentences"
    else:
        known = TEXT_SHAPES.get(str(cfg.dataset))
        generated = generate()
        texts = _typical(list(generated.texts["test"]))
        batch_tokens = float(ASSUMED_BATCH_TOKENS if known else 14)
        if corpus is not None:  # the data is here, the model's tokenizer is not: its sizes and words are the data's
            test = list(corpus.texts["test"])
            sizes, words = corpus.sizes(), sum(len(t.split()) for t in test) / len(test)
            if known:
                notes.append(f"{cfg.dataset} is here but not the model's tokenizer: batches assumed "
                             f"{ASSUMED_BATCH_TOKENS} tokens long, attacks calibrated on generated sentences")
        else:
            sizes = known[0] if known else generated.sizes()
            words = known[1] if known else sum(len(t.split()) for t in texts) / len(texts)
            if known:
                notes.append(f"{cfg.dataset} is not here: batches assumed {ASSUMED_BATCH_TOKENS} tokens long, "
                             f"sentences {words:g} words (Kim 2014), attacks calibrated on generated sentences")
        source = "generated sentences"
        tiny = write_tiny_model(folder / "lexicon-tokenizer", vocabulary())
        tokenizer = load_tokenizer(str(tiny), spec.max_length)
    if not real:
        notes.append("TextAttack's recipes timed with stand-ins for their resources (fewer substitutes per word than "
                     "HowNet's and the counter-fitted embeddings': treat the attack times as an order of magnitude)")
    for note in notes or [f"calibrating on {source}"]:
        log(note)
    return _TextWorld(model, tokenizer, texts, sizes, words, batch_tokens, notes)


def _typical(texts: list[str]) -> list[str]:
    """The sentences in order of how close their number of words is to the mean (the calibration takes the first)."""
    mean = sum(len(t.split()) for t in texts) / len(texts)
    return sorted(texts, key=lambda t: abs(len(t.split()) - mean))


def _architecture_stand_in(name: str, folder: Path) -> str:
    """A folder holding a randomly initialized network of ``name``'s architecture, for a model known by name (D
    Table 10's distilbert-base-uncased); a one-line error for another model that is not here."""
    from samat.empirical.libraries import text_library

    known = {"distilbert-base-uncased": "distilbert", "distilbert/distilbert-base-uncased": "distilbert"}
    if name not in known:
        raise SamatError(f"text.model {name} is not on this machine and its architecture is not known here: plan on "
                         "a machine that has it, or give its folder")
    transformers = text_library("transformers")
    config = transformers.AutoConfig.for_model(known[name], num_labels=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network = transformers.AutoModelForSequenceClassification.from_config(config)
    folder.mkdir(parents=True, exist_ok=True)
    network.save_pretrained(folder / "architecture")
    return str(folder / "architecture")


def synthetic_tokens(n_train: int, n_test: int, length: int, vocabulary: int, *, seed: int = 0) -> TextDataset:
    """Random token ids (no padding) of one length, random labels: a text dataset's shape, nothing else."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(5, vocabulary, (n_train + 2 * n_test, length), generator=g)
    y = torch.randint(0, 2, (n_train + 2 * n_test,), generator=g)
    texts = {"train": ("",) * n_train, "validation": ("",) * n_test, "test": ("",) * n_test}
    return TextDataset("synthetic", x[:n_train], y[:n_train], x[n_train:n_train + n_test],
                       y[n_train:n_train + n_test], 2, (), (), "none", validation_x=x[n_train + n_test:],
                       validation_y=y[n_train + n_test:], texts=texts, pad_id=0, max_length=length)


def plan_text(exp: Experiment, device: torch.device, cal: Calibration, log: Log) -> GridPlan:
    """The plan of a text grid (see the module): training steps on token batches, each recipe per sentence."""
    from samat.empirical.attacks.specs import TEXT_ALGORITHMS
    from samat.empirical.attacks.text.resources import missing_resources, use_resources
    from samat.empirical.attacks.text.standins import write_standins

    t0 = time.perf_counter()
    cuda = device.type == "cuda"
    specs = exp.attacks
    with tempfile.TemporaryDirectory(prefix="samat-plan-") as tmp:
        folder = Path(tmp)
        if any(missing_resources(a) for a in TEXT_ALGORITHMS if a in {s.algorithm for s in specs.values()}):
            use_resources(folder / "resources")  # before TextAttack loads (it reads its folders then)
            write_standins(folder / "resources")
        plan = GridPlan(exp, torch.cuda.get_device_name(device) if cuda else "CPU", [])
        steps: dict[str, TrainingCost] = {}
        timed: dict[tuple, TextAttackCost] = {}
        worlds: dict[tuple, _TextWorld] = {}
        for label in exp.labels:
            runs = exp.runs_for(label)
            cfg = runs[0].config
            where = (cfg.dataset, cfg.data_dir, cfg.text_spec.model, cfg.text_spec.max_length, cfg.batch_size)
            if where not in worlds:
                worlds[where] = _text_world(cfg, folder / f"world{len(worlds)}", log)
            world = worlds[where]
            plan.notes = list(dict.fromkeys([*plan.notes, *world.notes]))
            run_cfg = cfg.replace(text={"model": world.model, "max_length": cfg.text_spec.max_length})
            key = (f"{cfg.text_spec.model} ({round(world.batch_tokens)} tokens per batch), {cfg.method.display}, "
                   f"batch {cfg.batch_size}")
            if key not in steps:
                log(f"calibrating training: {key}")
                steps[key] = _text_training(run_cfg, world, device, cal)
            eval_seconds = {b: 0.0 for b in BOUNDS} if specs else {}
            n_eval = min(exp.n_eval, world.sizes["test"])
            for attack_label, s in specs.items():
                akey = (s.name, where)  # the method trained does not change what an attack costs
                if akey not in timed:
                    log(f"calibrating evaluation: {s.title} on {cfg.text_spec.model}")
                    net = build_model(cfg.model, input_shape=(cfg.text_spec.max_length,), num_classes=2,
                                      options={"model": world.model, "pad_id": int(world.tokenizer.pad_token_id)})
                    n = TEXT_SENTENCES["cuda" if cuda else "cpu"]
                    timed[akey] = time_recipe(s, net.to(device), world.tokenizer, cfg.text_spec.max_length,
                                              world.texts[:n], device=device, words=world.words,
                                              source="on generated sentences with stand-in resources"
                                              if world.notes else "on the run's test sentences")
                plan.attacks.setdefault(attack_label, timed[akey])
                for bound in BOUNDS:
                    eval_seconds[bound] += timed[akey].seconds_for(n_eval, bound)
            per_epoch = math.ceil(min(cfg.train_subset or world.sizes["train"], world.sizes["train"]) / cfg.batch_size)
            finished = sum(RunDir(r.run_dir).finished for r in runs)
            plan.runs.append(RunPlan(label, len(runs), finished, cfg.epochs,
                                     steps[key].run_seconds(cfg.epochs, per_epoch), eval_seconds))
    plan.training = steps
    plan.calibration_seconds = time.perf_counter() - t0
    return plan


def _text_training(cfg: TrainConfig, world: _TextWorld, device: torch.device, cal: Calibration) -> TrainingCost:
    """A step of the run's method on token batches of the run's mean batch length, and the epoch's test pass over
    the validation and test splits (see :func:`_at_size`)."""
    cuda = device.type == "cuda"
    length = max(2, round(world.batch_tokens))
    vocabulary = int(world.tokenizer.vocab_size)
    timings: list[StepTiming] = []

    def step(batch: int) -> float:
        data = synthetic_tokens(batch * (cal.warmup + cal.steps), 1, length, vocabulary)
        timings.append(time_steps(_calibration_config(cfg, device, batch), data, warmup=cal.warmup,
                                  steps=cal.steps))
        return timings[-1].seconds_per_step

    def test_pass(n: int) -> float:
        data = synthetic_tokens(1, n, length, vocabulary)
        return time_test_pass(build(_calibration_config(cfg, device, cfg.batch_size), data), n)

    step_seconds, _ = _at_size(step, min(cfg.batch_size, CPU_BATCH), cfg.batch_size, cuda)
    n_test = min(world.sizes["test"] + world.sizes["validation"], cfg.eval_batch_size)
    test_seconds, _ = _at_size(test_pass, min(n_test, 4 * CPU_BATCH), n_test, cuda)
    test_seconds *= math.ceil((world.sizes["test"] + world.sizes["validation"]) / cfg.eval_batch_size)
    timing = timings[-1]
    overhead = max(0.0, timing.warmup_seconds - cal.warmup * timing.seconds_per_step)
    return TrainingCost(cfg.batch_size, step_seconds, test_seconds, overhead, timing)


def duration(seconds: float) -> str:
    """Readable: '0.4 s', '38 s', '12 min', '3 h 05 min', '2.4 days'."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes:02d} min"
    return f"{seconds / 86400:.1f} days"


def _span(low: float, high: float) -> str:
    """'2 min' where both ends read the same, else '2 min – 5 min'."""
    a, b = duration(low), duration(high)
    return a if a == b else f"{a} – {b}"


def format_plan(plan: GridPlan) -> str:
    """The plan as a Markdown table, with the calibration it came from."""
    low, high = BOUNDS
    exp = plan.experiment
    evaluates = any(r.eval_seconds for r in plan.runs)
    lines = [f"{exp.title}: predicted device time on this machine ({plan.device})", "",
             "| Run | seeds | epochs | training per seed | evaluation per seed | all seeds |",
             "|---|---|---|---|---|---|"]
    for r in plan.runs:
        ev = _span(r.eval_seconds[low], r.eval_seconds[high]) if r.eval_seconds else "none"
        done = f" ({r.finished} finished)" if r.finished else ""
        total = _span(r.total(low), r.total(high))
        lines.append(f"| {r.label} | {r.seeds}{done} | {r.epochs} | {duration(r.train_seconds)} | {ev} | {total} |")
    train = sum(r.seeds * r.train_seconds for r in plan.runs)
    ev_low = sum(r.seeds * r.eval_seconds.get(low, 0.0) for r in plan.runs)
    ev_high = sum(r.seeds * r.eval_seconds.get(high, 0.0) for r in plan.runs)
    n_runs = sum(r.seeds for r in plan.runs)
    grid = _span(plan.total(low), plan.total(high))
    lines.append(f"| **whole grid** | {n_runs} runs | | {duration(train)} | "
                 f"{_span(ev_low, ev_high) if evaluates else 'none'} | **{grid}** |")
    if any(r.finished for r in plan.runs):
        left = sum(r.seeds - r.finished for r in plan.runs)
        lines.append(f"| still to run | {left} runs | | | | "
                     f"{_span(plan.total(low, True), plan.total(high, True)) if left else 'nothing'} |")
    lines.append("")
    if evaluates and exp.task is Task.TEXT:
        lines.append(f"Evaluation of {exp.n_eval:,} test sentences per run: from sentences that fall at once (any "
                     "substitution flips them) to sentences that never fall (every search runs to its end, PSO's "
                     "thousands of queries included).")
    elif evaluates:
        lines.append(f"Evaluation of {exp.n_eval:,} test images per run: from images that fall at once to images that "
                     "never fall (the papers' adversarially trained models sit near the second).")
    else:
        lines.append("Evaluation: natural accuracy only (no attack columns).")
    lines += ["", f"Calibration on this machine ({duration(plan.calibration_seconds)}):", ""]
    for key, c in plan.training.items():
        t = c.timing
        how = " + ".join([f"compiled ({t.compile})"] * bool(t.compile) + ["CUDA graph"] * t.cuda_graph) or "eager"
        scaled = f", timed at batch {t.batch_size} and scaled" if t.batch_size != c.batch_size else ""
        how = "eager: the fast path was off" if t.step_path == "eager" and (t.compile or t.cuda_graph) else how
        lines.append(f"- {key}: {1e3 * c.step_seconds:,.1f} ms per step ({how}{scaled}); test pass "
                     f"{duration(c.test_seconds)}; warm-up overhead (compilation, capture) "
                     f"{duration(c.overhead_seconds)} per run")
    for label, a in plan.attacks.items():
        lines.append(f"- {label}: {a.summary(low, high)} (falls at once – never falls)")
    if plan.notes:
        lines += ["", "Stand-ins:", ""] + [f"- {note}" for note in plan.notes]
    return "\n".join(lines)
