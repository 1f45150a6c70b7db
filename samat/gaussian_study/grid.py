"""The study's grid: the models D(p, η, n), seeds, methods and budgets, and the runs it trains."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from samat.empirical.training.config import TrainConfig


@dataclass(frozen=True)
class StudyGrid:
    models: tuple[tuple[float, float, int], ...] = ((0.8, 0.5, 10), (0.9, 0.3, 20), (0.7, 1.0, 5))
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    rhos: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5)
    at_fractions: tuple[float, ...] = (0.1, 0.25, 0.5)  # ε / η
    train_size: int = 10_000
    test_size: int = 10_000
    epochs: int = 8
    batch_size: int = 128
    lr: float = 0.1
    attack_steps: int = 20  # the evaluation PGD (training uses 5 steps: for a linear model the sign of the
    # input gradient never changes, so 5 steps of 2.5ε/5 already reach the corner of the ball)
    convergence_sizes: tuple[int, ...] = (500, 2000, 8000, 32000)
    convergence_epochs: int = 10

    @classmethod
    def quick(cls) -> StudyGrid:
        return cls(models=((0.8, 0.5, 6),), seeds=(0, 1, 2), rhos=(0.1, 0.5), at_fractions=(0.25,),
                   train_size=4000, test_size=4000, epochs=4, convergence_sizes=(500, 4000), convergence_epochs=6)


@dataclass(frozen=True)
class Job:
    key: str  # "p0.8-eta0.5-n10"
    label: str  # "sam-rho0.1"
    method: str
    rho: float | None  # SAM's radius, for the SAM family (None otherwise)
    at_eps: float | None  # AT's budget, for adversarial training (None otherwise)
    config: TrainConfig
    run_dir: Path
    model: tuple[float, float, int]
    kind: str = "sweep"  # or "convergence"


def run_config(grid: StudyGrid, model, seed: int, size: int, epochs: int, **method) -> TrainConfig:
    p, eta, n = model
    return TrainConfig(dataset="gaussian", model="linear", gaussian={"p": p, "eta": eta, "n": n, "train_size": size,
                       "test_size": grid.test_size, "seed": seed}, epochs=epochs, batch_size=grid.batch_size,
                       lr=grid.lr, weight_decay=0.0, seed=seed, device="cpu", **method)


def jobs(grid: StudyGrid, out: Path) -> list[Job]:
    out = Path(out) / "runs"
    todo = []
    for model in grid.models:
        p, eta, n = model
        key = f"p{p:g}-eta{eta:g}-n{n}"
        # (label, method, rho, at_eps, configuration fields)
        methods: list[tuple[str, str, float | None, float | None, dict]] = [("st", "sgd", None, None,
                                                                             {"method": "sgd"})]
        methods += [(f"sam-rho{r:g}", "sam", r, None, {"method": "sam", "rho": r}) for r in grid.rhos]
        methods += [(f"asam-rho{r:g}", "asam", r, None, {"method": "asam", "rho": r}) for r in grid.rhos]
        for f in grid.at_fractions:
            e = f * eta
            methods.append((f"at-nonrobust-eps{e:g}", "at_nonrobust", None, e,
                            {"method": "pgd_at", "at_eps": e, "at_features": "non_robust", "at_steps": 5}))
            methods.append((f"at-all-eps{e:g}", "at_all", None, e, {"method": "pgd_at", "at_eps": e, "at_steps": 5}))
        for seed in grid.seeds:
            for label, method, rho, at_eps, kw in methods:
                cfg = run_config(grid, model, seed, grid.train_size, grid.epochs, **kw)
                todo.append(Job(key, label, method, rho, at_eps, cfg, out / key / f"{label}-seed{seed}", model))
            for size in grid.convergence_sizes:
                for label, method, rho, at_eps, kw in (methods[0], methods[-2]):  # ST, and AT at the largest ε
                    cfg = run_config(grid, model, seed, size, grid.convergence_epochs, **kw)
                    todo.append(Job(key, label, method, rho, at_eps, cfg,
                                    out / key / "convergence" / f"{label}-n{size}-seed{seed}", model, "convergence"))
    return todo


# A margin this close to 0 (relative to the sum of |x_i w_i| it comes from) may take either sign in the float32
# forward pass: rounding is ~6e-8 per operation over at most a few dozen terms, so 1e-4 is generous.
FLOAT32_MARGIN_RTOL = 1e-4
