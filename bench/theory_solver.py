"""Benchmark: the vectorized theory solver against a per-point scipy.optimize loop.

Both solve the same ST, AT and SAM optima, at the same N parameter points, to the same relative
accuracy (--rtol, default 1e-8: about the best a derivative-free scalar search can reach on a
smooth maximum in float64). Both are timed in this one run, on this machine, and checked against
reference optima (Theorem 1/2 closed forms; the SAM equal-endpoints root to full precision).

    python bench/theory_solver.py                # 10,000 points (the scipy loop takes minutes)
    python bench/theory_solver.py --points 500   # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import scipy
from scipy.optimize import minimize_scalar
from scipy.special import log_ndtr
from tqdm import tqdm

from samat.theory import closed_form as cf
from samat.theory.numeric import Z_NODES, at_optimum, sam_optimum, sam_optimum_equal_endpoints, st_optimum

from common import count, host, output_file, write_record


def points(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.55, 0.99, count), rng.uniform(0.1, 2.0, count), rng.integers(1, 101, count).astype(float),
            rng.uniform(0.02, 1.0, count))


def log_risk(w, p, eta, n, eps=0.0):
    """log(1 - u(w1)) (eps=0) or log(1 - v(w1)), one point at a time, in log space like ours: with
    plain ndtr, u saturates at 1.0 for large η√n and a scalar search cannot find the optimum at all."""
    mu, rn = (eta - eps) * n, math.sqrt(n)
    return float(np.logaddexp(math.log(p) + log_ndtr((-w - mu) / rn), math.log1p(-p) + log_ndtr((w - mu) / rn)))


def scipy_point(p, eta, n, eps_at, eps_sam, rtol):
    """ST, AT and SAM optima of one point: the same scan as ours to bracket the maximum, then a
    bounded Brent search in the bracket; SAM's inner minimum is a nested bounded search plus the ends."""
    nodes = np.sqrt(n) * Z_NODES

    def argmin(f):
        values = [f(w) for w in nodes]
        k = int(np.argmin(values))
        lo, hi = nodes[max(k - 1, 0)], nodes[min(k + 1, len(nodes) - 1)]
        return minimize_scalar(f, bounds=(lo, hi), method="bounded",
                               options={"xatol": rtol * max(abs(lo), abs(hi)), "maxiter": 2000}).x

    w_st = argmin(lambda w: log_risk(w, p, eta, n))
    w_at = argmin(lambda w: log_risk(w, p, eta, n, eps_at))

    def sam_objective(w):  # max over |δ| <= ε of the risk: a bounded search inside, and the two ends
        inner = minimize_scalar(lambda d: -log_risk(w + d, p, eta, n), bounds=(-eps_sam, eps_sam),
                                method="bounded", options={"xatol": rtol * eps_sam})
        return max(-inner.fun, log_risk(w - eps_sam, p, eta, n), log_risk(w + eps_sam, p, eta, n))

    w_sam = argmin(sam_objective)
    return w_st, w_at, w_sam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=count(1), default=10_000)
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--json", type=output_file, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    P, E, N, ES = points(args.points)
    EA = 0.5 * E

    t0 = time.perf_counter()
    ours = (st_optimum(P, E, N, rtol=args.rtol), at_optimum(P, E, N, EA, rtol=args.rtol),
            sam_optimum(P, E, N, ES, rtol=args.rtol))
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    theirs = np.array([scipy_point(*x, args.rtol) for x in tqdm(list(zip(P, E, N, EA, ES, strict=True)),
                                                                 desc="scipy loop", unit="pt", mininterval=5)]).T
    t_scipy = time.perf_counter() - t0

    reference = (cf.w1_star(P, E), cf.w1_at(P, E, EA), sam_optimum_equal_endpoints(P, E, N, ES).w1_float())
    names = ("ST", "AT", "SAM")
    def errors(values):
        out = {}
        for name, v, r in zip(names, values, reference, strict=True):
            rel = np.abs(np.asarray(v, dtype=float) - r) / np.abs(r)
            out[name] = {"max": float(np.max(rel)), "p99": float(np.quantile(rel, 0.99)),
                         "share_within_rtol": float(np.mean(rel <= args.rtol))}
        return out

    err_ours, err_scipy = errors([o.w1_float() for o in ours]), errors(theirs)
    result = {
        "points": args.points, "rtol": args.rtol, "seconds_vectorized": t_ours, "seconds_scipy_loop": t_scipy,
        "speedup": t_scipy / t_ours, "max_rel_error_vectorized": err_ours, "max_rel_error_scipy_loop": err_scipy,
        "machine": host(), "numpy": np.__version__, "scipy": scipy.__version__,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        write_record(args.json, result)


if __name__ == "__main__":
    main()
