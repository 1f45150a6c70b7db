"""Theory meets training: linear classifiers trained on samples of D(p, η, n) by the same trainers that
train PRN-18, measured with theory's exact objectives, and compared with the population optima.

For each (p, η, n), seed and method (SGD, SAM(ρ), ASAM(ρ), PGD-AT l∞ on the non-robust features as in
the papers, PGD-AT l∞ on all features) one run is trained into ``<out>/runs`` (finished runs are
skipped, interrupted ones resumed). Each trained w gives:

* W_R = w1 / (w2 + ... + w_{n+1});
* its exact population clean accuracy and robust accuracy (non-robust and full l∞ ball), from
  :func:`theory.objectives.linear_log_risk`, not from a test sample;
* its robust accuracy on a test sample under the real attacks of :mod:`empirical.attacks` (PGD without
  the [0, 1] box), next to the exact worst case on the same sample (margin - ε||w||_1), which a correct
  attack must reach, and next to the population value.

The seeds draw different training samples, so the intervals cover sampling and initialization.
A separate sweep trains ST and AT on growing samples to check that trained W_R converges to the
population optimum of the loss the trainer minimizes (logistic: see :mod:`theory.lifted`).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empirical.config import TrainConfig
from empirical.runs import RunDir
from theory import closed_form as cf
from theory.objectives import linear_log_risk


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
    param: float | None  # ρ or ε
    config: TrainConfig
    run_dir: Path
    model: tuple[float, float, int]
    kind: str = "sweep"  # or "convergence"


def _config(grid: StudyGrid, model, seed: int, size: int, epochs: int, **method) -> TrainConfig:
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
        methods: list[tuple[str, str, float | None, dict]] = [("st", "sgd", None, {"method": "sgd"})]
        methods += [(f"sam-rho{r:g}", "sam", r, {"method": "sam", "rho": r}) for r in grid.rhos]
        methods += [(f"asam-rho{r:g}", "asam", r, {"method": "asam", "rho": r}) for r in grid.rhos]
        for f in grid.at_fractions:
            e = f * eta
            methods.append((f"at-nonrobust-eps{e:g}", "at_nonrobust", e,
                            {"method": "pgd_at", "at_eps": e, "at_features": "non_robust", "at_steps": 5}))
            methods.append((f"at-all-eps{e:g}", "at_all", e, {"method": "pgd_at", "at_eps": e, "at_steps": 5}))
        for seed in grid.seeds:
            for label, method, param, kw in methods:
                cfg = _config(grid, model, seed, grid.train_size, grid.epochs, **kw)
                todo.append(Job(key, label, method, param, cfg, out / key / f"{label}-seed{seed}", model))
            for size in grid.convergence_sizes:
                for label, method, param, kw in (methods[0], methods[-2]):  # ST, and AT at the largest ε
                    cfg = _config(grid, model, seed, size, grid.convergence_epochs, **kw)
                    todo.append(Job(key, label, method, param, cfg,
                                    out / key / "convergence" / f"{label}-n{size}-seed{seed}", model, "convergence"))
    return todo


# A margin this close to 0 (relative to the sum of |x_i w_i| it comes from) may take either sign in the float32
# forward pass: rounding is ~6e-8 per operation over at most a few dozen terms, so 1e-4 is generous.
FLOAT32_MARGIN_RTOL = 1e-4


def float32_ambiguous(x: np.ndarray, w: np.ndarray, margins: np.ndarray) -> np.ndarray:
    """Where a float32 model may classify differently from the exact (float64) worst-case margin."""
    return np.abs(margins) <= FLOAT32_MARGIN_RTOL * (np.abs(x) @ np.abs(w) + 1)


def trained_weights(run_dir: Path) -> np.ndarray:
    return torch.load(run_dir / "model.pt", map_location="cpu")["weight"].double().numpy()


def measure(job: Job, grid: StudyGrid, data=None) -> dict[str, Any]:
    """W_R, exact population accuracies, and attacked vs exact robust accuracy on the test sample."""
    from empirical.attacks import build_attack, spec
    from empirical.models import build_model

    p, eta, n = job.model
    w = trained_weights(job.run_dir)
    w1, rest = float(w[0]), w[1:]
    w_sum, w_l2, w_l1 = float(rest.sum()), float(np.linalg.norm(rest)), float(np.abs(rest).sum())
    row: dict[str, Any] = {"key": job.key, "label": job.label, "method": job.method, "param": job.param,
                           "seed": job.config.seed, "train_size": job.config.gaussian["train_size"], "kind": job.kind,
                           "w1": w1, "w_sum": w_sum, "W_R": w1 / w_sum}

    def exact(eps: float, eps_x1: float) -> float:
        return float(1 - np.exp(linear_log_risk(w1, w_sum, w_l2, w_l1, p, eta, eps, eps_x1).value))

    row["clean_accuracy"] = exact(0.0, 0.0)
    budgets = sorted({f * eta for f in grid.at_fractions} | {0.5 * eta})
    row["robust_accuracy_nonrobust"] = {f"{e:g}": exact(e, 0.0) for e in budgets}
    row["robust_accuracy_all"] = {f"{e:g}": exact(e, e) for e in budgets}
    if job.kind == "sweep" and data is not None:
        model = build_model("linear", input_shape=data.input_shape, num_classes=2)
        model.load_state_dict(torch.load(job.run_dir / "model.pt", map_location="cpu"))
        x, y = data.test_x, data.test_y
        sign = (2 * y - 1).double()
        margin = x.double() @ torch.from_numpy(w)
        attacked, exact_sample, ambiguous = {}, {}, {}
        for e in budgets:
            s = spec(f"pgd{grid.attack_steps}_linf").at(e)
            x_adv = build_attack(s, model, num_classes=2, seed=0, device="cpu", box=None)(x, y)
            with torch.no_grad():
                attacked[f"{e:g}"] = float((model(x_adv).argmax(1) == y).double().mean())
            worst = (sign * margin - e * float(np.abs(w).sum())).numpy()
            exact_sample[f"{e:g}"] = float((worst > 0).mean())
            ambiguous[f"{e:g}"] = float(float32_ambiguous(x.double().numpy(), w, worst).mean())
        row["pgd_accuracy_all_sample"] = attacked
        row["exact_accuracy_all_sample"] = exact_sample
        row["float32_ambiguous_share"] = ambiguous
        row["test_size"] = int(len(y))
    return row


def run(grid: StudyGrid, out: Path, *, log: Callable[[str], None] = print, progress: bool = False) -> Path:
    """Train what is missing, measure every run, write ``<out>/measurements.json``.

    Runs on one CPU thread: for a linear model every op is tiny, and intra-op threads only cost
    (30x slower with two threads when another process holds a core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(grid, out, log=log, progress=progress)
    finally:
        torch.set_num_threads(threads)


def _run(grid: StudyGrid, out: Path, *, log: Callable[[str], None], progress: bool) -> Path:
    from empirical.train import load_data, train

    all_jobs = jobs(grid, out)
    log(f"gaussian study: {len(all_jobs)} runs into {out}/runs "
        f"({sum(RunDir(j.run_dir).finished for j in all_jobs)} already finished)")
    rows, cache = [], {}
    for i, job in enumerate(all_jobs, 1):
        key = json.dumps(job.config.gaussian, sort_keys=True)
        if key not in cache:
            cache.clear()
            cache[key] = load_data(job.config)
        if not RunDir(job.run_dir).finished:
            if i % 10 == 1 or progress:
                log(f"  [{i}/{len(all_jobs)}] {job.key} {job.label} seed {job.config.seed} ({job.kind})")
            train(job.config, job.run_dir, resume=True, progress=progress, data=cache[key])
        rows.append(measure(job, grid, cache[key]))
    path = Path(out) / "measurements.json"
    path.write_text(json.dumps({"grid": asdict(grid), "rows": rows}, indent=1))
    return path


# --- Theory side -------------------------------------------------------------------------------


def theory_curves(model, grid: StudyGrid) -> dict[str, Any]:
    """Population W_R of every method the study trains, from theory (0-1 and logistic losses)."""
    from theory import symbolic
    from theory.lifted import LogisticModel, sam_all_weights_optimum, sam_scale_curve
    from theory.numeric import at_optimum, sam_optimum_equal_endpoints, st_optimum

    p, eta, n = model
    logistic = LogisticModel(p, eta, n)
    st = logistic.st_optimum()
    eps = np.array(sorted(set(grid.at_fractions)), dtype=float) * eta
    rhos = np.array(grid.rhos, dtype=float)
    st01 = st_optimum(p, eta, n)
    full01 = at_optimum(p, eta, n, eps, full_ball=True)
    sam01 = sam_optimum_equal_endpoints(p, eta, n, rhos)
    at_log = [logistic.at_optimum(e) for e in eps]
    at_full_log = [logistic.at_optimum(e, full_ball=True) for e in eps]
    sam_all01 = [sam_all_weights_optimum(p, eta, n, r) for r in rhos]
    sam_log = [logistic.sam_optimum(r, start=st) for r in rhos]
    sam_step = [logistic.sam_one_step_limit(r) for r in rhos]
    w_st01 = float(st01.w1_float())

    def atol01(opt):  # accuracy of a 0-1 W_R: the bracket width in w1, over n
        return (np.asarray(opt.accuracy) / n).tolist()

    def atol(opts):  # accuracy of lifted W_R values
        return [o.w_r_rtol * abs(o.w_r) for o in opts]

    # scale invariance: the ST classifier at growing scale c, under SAM's fixed radius (the largest ρ)
    scales = np.geomspace(0.25, 64.0, 13)
    scale_curve = sam_scale_curve(p, eta, n, float(rhos.max()), w_st01 / n, scales)

    # Theorem 4 as derived: W_R^SAM / W_R* - 1 = A ρ² + O(ρ⁴), A from the sympy expansion (= 1/(3n))
    derived = symbolic.sam_expansion(order=2).substitute_w_star().A
    coefficient = float(symbolic.lambdify(derived, symbolic.p, symbolic.eta, symbolic.n)(p, eta, n))

    # "_atol": the accuracy of each W_R, from its solve; the verdicts' tolerances
    return {
        "sam_coefficient_derived": coefficient,
        "sam_scale": {"rho": float(rhos.max()), "scales": scales.tolist(),
                      "log_error": np.asarray(scale_curve).tolist(), "log_error_st": float(np.asarray(st01.log_risk))},
        "W_R_st_01": w_st01 / n,
        "W_R_st_01_atol": float(st01.accuracy) / n,
        "W_R_st_logistic": st.w_r,
        "W_R_st_logistic_atol": atol([st])[0],
        "eps": eps.tolist(),
        "W_R_at_theorem2": (cf.w_r_at(p, eta, n, eps)).tolist(),
        "W_R_at_full_01": np.where(full01.found, full01.w1_float() / n, np.inf).tolist(),
        "W_R_at_full_01_atol": atol01(full01),
        "W_R_at_logistic": [o.w_r for o in at_log],
        "W_R_at_logistic_atol": atol(at_log),
        "W_R_at_full_logistic": [o.w_r for o in at_full_log],
        "W_R_at_full_logistic_atol": atol(at_full_log),
        "rho": rhos.tolist(),
        "W_R_sam_w1_only_01": (sam01.w1_float() / n).tolist(),
        "W_R_sam_w1_only_01_atol": atol01(sam01),
        "W_R_sam_all_01": [o.w_r for o in sam_all01],
        "W_R_sam_all_01_atol": atol(sam_all01),
        "W_R_sam_all_logistic": [o.w_r for o in sam_log],
        "W_R_sam_all_logistic_atol": atol(sam_log),
        "W_R_sam_one_step_logistic": [o.w_r for o in sam_step],
        "W_R_sam_one_step_logistic_atol": atol(sam_step),
    }


def standard_error(values: list[float]) -> tuple[float, float, int]:
    """Mean, standard error of the mean, and degrees of freedom: what :func:`interval` needs at any level."""
    a = np.asarray(values, dtype=float)
    se = float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else float("nan")
    return float(a.mean()), se, len(a) - 1


def interval(stat: tuple[float, float, int], comparisons: int = 1, level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t interval for a ``standard_error`` triple, at ``level`` family-wise
    over ``comparisons`` (Bonferroni; 1: the plain interval)."""
    from scipy import stats

    mean, se, dof = stat
    return mean, float(stats.t.ppf(1 - (1 - level) / (2 * comparisons), dof) * se)


def summarize(measurements: Path, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Means and standard errors (``standard_error``) per (model, method, parameter), theory beside them;
    writes summary.json."""
    doc = json.loads(Path(measurements).read_text())
    grid = StudyGrid(**{k: tuple(tuple(m) for m in v) if k == "models" else (tuple(v) if isinstance(v, list) else v)
                        for k, v in doc["grid"].items()})
    groups: dict[tuple, list[dict]] = defaultdict(list)
    st_w_r: dict[tuple, float] = {}  # (key, seed) -> W_R of ST on the same sample, from the same initial weights
    for row in doc["rows"]:
        groups[(row["key"], row["kind"], row["label"], row["train_size"])].append(row)
        if row["kind"] == "sweep" and row["method"] == "sgd":
            st_w_r[(row["key"], row["seed"])] = row["W_R"]
    out: dict[str, Any] = {"grid": doc["grid"], "models": {}}
    for model in grid.models:
        p, eta, n = model
        key = f"p{p:g}-eta{eta:g}-n{n}"
        log(f"  theory curves for {key}")
        entry: dict[str, Any] = {"p": p, "eta": eta, "n": n, "theory": theory_curves(model, grid), "trained": [],
                                 "convergence": []}
        for (k, kind, label, size), rows in sorted(groups.items()):
            if k != key:
                continue
            stats: dict[str, Any] = {"label": label, "method": rows[0]["method"], "param": rows[0]["param"],
                                     "train_size": size, "seeds": len(rows)}
            for name in ("W_R", "clean_accuracy"):
                stats[name] = standard_error([r[name] for r in rows])
            paired = [r["W_R"] / st_w_r[(key, r["seed"])] - 1 for r in rows if (key, r["seed"]) in st_w_r]
            if kind == "sweep" and len(paired) == len(rows):
                stats["W_R_change_vs_st"] = standard_error(paired)  # paired by seed: same sample, same start
            for name in ("robust_accuracy_nonrobust", "robust_accuracy_all", "pgd_accuracy_all_sample",
                         "exact_accuracy_all_sample"):
                if name in rows[0]:
                    stats[name] = {e: standard_error([r[name][e] for r in rows]) for e in rows[0][name]}
            if "pgd_accuracy_all_sample" in rows[0]:
                gaps = [abs(r["pgd_accuracy_all_sample"][e] - r["exact_accuracy_all_sample"][e])
                        for r in rows for e in r["pgd_accuracy_all_sample"]]
                stats["pgd_vs_exact_max_gap"] = max(gaps)
                stats["float32_ambiguous_max_share"] = max(v for r in rows
                                                           for v in r["float32_ambiguous_share"].values())
                stats["test_size"] = rows[0]["test_size"]
            entry["convergence" if kind == "convergence" else "trained"].append(stats)
        out["models"][key] = entry
    path = Path(measurements).with_name("summary.json")
    path.write_text(json.dumps(out, indent=1))
    return out


# --- Figures ------------------------------------------------------------------------------------------


def _errorbar(ax, rows, xkey, ykey, **kw):
    rows = sorted(rows, key=lambda r: r[xkey])
    if not rows:
        return
    ax.errorbar([r[xkey] for r in rows], [r[ykey][0] for r in rows], yerr=[interval(r[ykey])[1] for r in rows],
                capsize=3, ms=5, **kw)


def figures(summary: dict[str, Any], out: Path) -> list[Path]:
    """W_R against ρ and ε (trained points with 95% intervals, theory curves), robust accuracy under PGD
    against the exact worst case, and convergence with the sample size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys = list(summary["models"])
    written: list[Path] = []

    def panels():  # one panel per (p, η, n)
        fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.8), constrained_layout=True, squeeze=False)
        return fig, axes[0]

    def finish(ax, key, xlabel, ylabel):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(key)
        ax.legend(fontsize=7)

    def save(fig, name):
        for ext in ("png", "pdf"):
            fig.savefig(out / f"{name}.{ext}", dpi=130)
            written.append(out / f"{name}.{ext}")
        plt.close(fig)

    fig, axes = panels()
    for ax, key in zip(axes, keys, strict=True):
        m, th = summary["models"][key], summary["models"][key]["theory"]
        st = next(r for r in m["trained"] if r["method"] == "sgd")
        mean, half = interval(st["W_R"])
        ax.axhspan(mean - half, mean + half, color="grey", alpha=0.2,
                   label="ST trained (95% CI)")
        ax.axhline(th["W_R_st_01"], color="k", lw=1, label="ST population (0-1 = logistic)")
        rho = th["rho"]
        ax.plot(rho, th["W_R_sam_w1_only_01"], "k--", label="SAM on w1 only, 0-1 (papers' model)")
        ax.plot(rho, cf.w1_sam_claimed(th["W_R_st_01"], rho), "k:", label="Theorem 4 as claimed")
        ax.plot(rho, th["W_R_sam_all_01"], "C3-", label="SAM on all weights, 0-1")
        ax.plot(rho, th["W_R_sam_all_logistic"], "C2-", label="SAM on all weights, logistic (exact max)")
        ax.plot(rho, th["W_R_sam_one_step_logistic"], "C2:", label="SAM one-step, logistic (full batch)")
        _errorbar(ax, [r for r in m["trained"] if r["method"] == "sam"], "param", "W_R", fmt="o", color="C0",
                  label="SAM trained")
        _errorbar(ax, [r for r in m["trained"] if r["method"] == "asam"], "param", "W_R", fmt="s", color="C1",
                  label="ASAM trained")
        finish(ax, key, "ρ (SAM radius)", "W_R = w1 / Σ w_i")
    save(fig, "w_r_vs_rho")

    # the same comparison as a change against ST, paired by seed: the intervals lose the seed-to-seed spread
    fig, axes = panels()
    for ax, key in zip(axes, keys, strict=True):
        m, th = summary["models"][key], summary["models"][key]["theory"]
        rho = np.array(th["rho"])
        fine = np.linspace(0, rho.max(), 101)
        pct = lambda values, base: 100 * (np.asarray(values) / base - 1)  # noqa: E731
        ax.axhline(0, color="k", lw=1, label="ST")
        ax.plot(fine, 100 * cf.THEOREM4_COEFFICIENT * fine**2, "k:", label="Theorem 4 as claimed, (2/3)ρ²")
        ax.plot(fine, 100 * th["sam_coefficient_derived"] * fine**2, "k-.", label="Theorem 4 derived, ρ²/(3n)")
        ax.plot(rho, pct(th["W_R_sam_w1_only_01"], th["W_R_st_01"]), "k--", marker=".",
                label="SAM on w1 only, 0-1 (papers' model)")
        ax.plot(rho, pct(th["W_R_sam_all_01"], th["W_R_st_01"]), "C3-", marker=".", label="SAM on all weights, 0-1")
        ax.plot(rho, pct(th["W_R_sam_all_logistic"], th["W_R_st_logistic"]), "C2-", marker=".",
                label="SAM on all weights, logistic (exact max)")
        ax.plot(rho, pct(th["W_R_sam_one_step_logistic"], th["W_R_st_logistic"]), "C2:", marker=".",
                label="SAM one-step, logistic (full batch)")
        for method, fmt, color, label in (("sam", "o", "C0", "SAM trained"), ("asam", "s", "C1", "ASAM trained")):
            rows = sorted((r for r in m["trained"] if r["method"] == method), key=lambda r: r["param"])
            ax.errorbar([r["param"] * (1.02 if method == "asam" else 1) for r in rows],
                        [100 * r["W_R_change_vs_st"][0] for r in rows],
                        yerr=[100 * interval(r["W_R_change_vs_st"])[1] for r in rows],
                        fmt=fmt, color=color, capsize=3, ms=5, label=label + " (95% CI, paired with ST)")
        ax.set_yscale("symlog", linthresh=0.1)
        finish(ax, key, "ρ (SAM radius)", "W_R change against ST (%; symlog below 0.1%)")
    save(fig, "w_r_change_vs_rho")

    fig, axes = panels()
    for ax, key in zip(axes, keys, strict=True):
        m, th = summary["models"][key], summary["models"][key]["theory"]
        eps = th["eps"]
        ax.axhline(th["W_R_st_01"], color="k", lw=1, label="ST population")
        ax.plot(eps, th["W_R_at_theorem2"], "k--", label="Theorem 2 (= logistic AT population)")
        ax.plot(eps, th["W_R_at_full_01"], "C3-", marker=".", label="AT full ℓ∞ ball, 0-1")
        ax.plot(eps, th["W_R_at_full_logistic"], "C2-", marker=".", label="AT full ℓ∞ ball, logistic")
        _errorbar(ax, [r for r in m["trained"] if r["method"] == "at_nonrobust"], "param", "W_R", fmt="o",
                  color="C0", label="AT trained, non-robust features")
        _errorbar(ax, [r for r in m["trained"] if r["method"] == "at_all"], "param", "W_R", fmt="s", color="C1",
                  label="AT trained, all features")
        finish(ax, key, "ε (ℓ∞ budget of AT)", "W_R")
    save(fig, "w_r_vs_eps")

    fig, ax = plt.subplots(figsize=(6.5, 4.8), constrained_layout=True)
    for i, key in enumerate(keys):
        sc = summary["models"][key]["theory"]["sam_scale"]
        excess = np.exp(sc["log_error"]) - np.exp(sc["log_error_st"])
        ax.plot(sc["scales"], excess, "o-", color=f"C{i}", ms=4, label=f"{key}, ρ={sc['rho']:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("scale c of w = c·(n W_R*, 1, ..., 1) (c = 1: the papers' gauge)")
    ax.set_ylabel("SAM objective - ST error (worst 0-1 error over the ρ-ball)")
    ax.set_title("0-1 SAM on all weights: one classifier, any scale")
    ax.legend(fontsize=7)
    save(fig, "sam_scale")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6), constrained_layout=True)
    for key in keys:
        for r in summary["models"][key]["trained"]:
            if "pgd_accuracy_all_sample" not in r:
                continue
            for e, (acc, *_) in r["pgd_accuracy_all_sample"].items():
                ax1.plot(r["exact_accuracy_all_sample"][e][0], acc, "o", ms=3, color="C0")
                ax2.plot(r["robust_accuracy_all"][e][0], acc, "o", ms=3, color="C1")
    for ax, name in ((ax1, "exact worst case on the same test sample"), (ax2, "exact population worst case (theory)")):
        lims = [0.4, 1.0]
        ax.plot(lims, lims, "k-", lw=0.8)
        ax.set_xlabel(name)
        ax.set_ylabel("accuracy under PGD-20 (empirical.attacks, no box)")
    ax1.set_title("PGD reaches the exact worst case")
    ax2.set_title("sample against population")
    save(fig, "pgd_vs_exact")

    fig, ax = plt.subplots(figsize=(6.5, 4.8), constrained_layout=True)
    for key in keys:
        m, th = summary["models"][key], summary["models"][key]["theory"]
        targets = (("sgd", th["W_R_st_logistic"], "o"), ("at_nonrobust", th["W_R_at_logistic"][-1], "s"))
        for method, target, marker in targets:
            rows = sorted([r for r in m["convergence"] if r["method"] == method], key=lambda r: r["train_size"])
            if rows:
                ax.errorbar([r["train_size"] for r in rows], [abs(r["W_R"][0] - target) / target for r in rows],
                            yerr=[interval(r["W_R"])[1] / target for r in rows], fmt=marker + "-", capsize=3,
                            label=f"{key} {'ST' if method == 'sgd' else 'AT'}")
    sizes = np.array(sorted({r["train_size"] for k in keys for r in summary["models"][k]["convergence"]}))
    if len(sizes):
        ax.plot(sizes, 0.5 / np.sqrt(sizes / sizes[0]) * 0.1, "k:", label="∝ 1/√N")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training samples N")
    ax.set_ylabel("|W_R trained - W_R population| / W_R population")
    ax.set_title("Trained optima approach the logistic population optimum")
    ax.legend(fontsize=7)
    save(fig, "convergence")
    return written
