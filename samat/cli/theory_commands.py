"""``samat theory solve | verify | plot``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from samat.cli.argtypes import integer, ranged
from samat.core.errors import SamatError
from samat.core.results import check_writable_folder
from samat.theory.model import EPS_RANGE, ETA_RANGE, N_RANGE, P_RANGE

arg_p = ranged("p", P_RANGE, lambda v: 0.5 < v < 1)
arg_eta = ranged("eta", ETA_RANGE, lambda v: v > 0)
arg_n = ranged("n", N_RANGE, lambda v: v >= 1, kind=integer)
arg_eps = ranged("eps", EPS_RANGE, lambda v: v >= 0)
arg_dps = ranged("dps", "an integer in [20, 1000]", lambda v: 20 <= v <= 1000, kind=integer)


def add_commands(theory: argparse.ArgumentParser) -> None:
    sub = theory.add_subparsers(dest="theory_command", required=True, metavar="{solve,verify,plot}")

    solve = sub.add_parser("solve", help="numerical and closed-form ST, AT and SAM optima at one parameter point",
                           description="Solve the ST, AT and SAM population optima of D(p, eta, n) numerically from "
                           "the objectives, next to the papers' closed forms.")
    solve.add_argument("--p", type=arg_p, required=True, help=f"accuracy of the robust feature, {P_RANGE}")
    solve.add_argument("--eta", type=arg_eta, required=True, help=f"mean of the non-robust features, {ETA_RANGE}")
    solve.add_argument("--n", type=arg_n, required=True, help=f"number of non-robust features, {N_RANGE}")
    solve.add_argument("--eps", type=arg_eps, required=True,
                       help="budget: AT's l-inf budget and SAM's |delta| on w1 (accepts fractions like 8/255)")
    solve.add_argument("--precision", choices=("float64", "mp"), default="float64",
                       help="float64 (default, vectorized) or mpmath for tiny eps")
    solve.add_argument("--dps", type=arg_dps, default=50, help="decimal digits for --precision mp (default 50)")
    solve.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    solve.set_defaults(func=cmd_solve)

    verify = sub.add_parser("verify", help="check Theorems 1-5 against the numerical optima",
                            description="Check every theoretical claim of both papers against numerical optima and "
                            "write DIR/verification.json and DIR/verification.md. Exits 0 whether or not the "
                            "claims hold.")
    verify.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    verify.add_argument("--figures", type=Path, default=Path("figures"), metavar="DIR",
                        help="where `samat theory plot` puts the figures that the report links (default: figures)")
    verify.add_argument("--quick", action="store_true", help="a small grid (seconds): for smoke tests")
    verify.add_argument("--force", action="store_true", help="overwrite an existing report")
    verify.set_defaults(func=cmd_verify)

    plot = sub.add_parser("plot", help="draw the theory-versus-eps figures (PNG and PDF)",
                          description="Draw the theory-versus-eps figures into DIR, with their data as JSON.")
    plot.add_argument("--out", type=Path, default=Path("figures"), metavar="DIR", help="output directory (figures)")
    plot.add_argument("--force", action="store_true", help="overwrite existing figures")
    plot.set_defaults(func=cmd_plot)


def _refuse_overwrite(paths: list[Path], force: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise SamatError(f"{existing[0]} already exists; pass --force to overwrite it")


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def cmd_solve(args: argparse.Namespace) -> int:
    from samat.theory.solve import solve_point

    result = solve_point(args.p, args.eta, args.n, args.eps, precision=args.precision, dps=args.dps)
    if args.json:
        print(json.dumps(result))
    else:
        print(_solve_table(result))
    return 0


def _solve_table(r: dict) -> str:
    num, cf, acc = r["numeric"], r["closed_form"], r["numeric"]["bracket_width"]
    fmt = lambda v: "—" if v is None else f"{v:.12g}"  # noqa: E731
    rows = [
        ("ST   w1*", num["w_star"], cf["w_star"], acc["w_star"]),
        ("AT   w1^AT", num["w_at"], cf["w_at"], acc["w_at"]),
        ("SAM  w1^SAM", num["w_sam"], cf["w_sam_claimed"], acc["w_sam"]),
        ("SAM  per-sample", num["w_sam_per_sample"], None, acc["w_sam_per_sample"]),
    ]
    p = r["params"]
    out = [f"D(p={p['p']}, eta={p['eta']}, n={p['n']}), eps={p['eps']}  [{r['precision']}]",
           f"{'':13s}{'numerical':>20s}{'paper closed form':>20s}{'bracket width':>16s}"]
    out += [f"{name:13s}{fmt(n):>20s}{fmt(c):>20s}{'' if a is None else f'{a:.2e}':>16s}" for name, n, c, a in rows]
    out.append(f"derived SAM  w1*(1 + eps^2/(3n)) = {fmt(r['derived']['w_sam'])}")
    out.append(f"derived SAM per-sample  n ln(p/(1-p)) / (2(eta n - eps)) = {fmt(cf['w_sam_per_sample'])}")
    out.append("SAM: the population max-min of the proofs; per-sample: the worst delta per sample, as W eq. (15) "
               "and D eq. (11) print the objective")
    out += [f"note: {note}" for note in r.get("notes", [])]
    return "\n".join(out)


def cmd_verify(args: argparse.Namespace) -> int:
    from samat.theory.claims import Grid
    from samat.theory.claims.report import JSON_NAME, MARKDOWN_NAME, verify_into

    out: Path = args.out
    targets = [out / JSON_NAME, out / MARKDOWN_NAME]
    _refuse_overwrite(targets, args.force)
    check_writable_folder(out, "--out")  # before the work, not after
    print(f"verifying Theorems 1-5 into {out}/", file=sys.stderr)
    reports, seconds = verify_into(out, Grid.quick() if args.quick else Grid(), figures_dir=args.figures,
                                   progress=_progress)
    for r in reports:
        print(f"{r.key}: {r.verdict}" + (f" (corrected statement {r.corrected_verdict})" if r.corrected else ""))
    print(f"wrote {targets[0]} and {targets[1]} in {seconds:.1f} s")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from samat.theory import plots

    _refuse_overwrite(plots.existing_outputs(args.out), args.force)
    check_writable_folder(args.out, "--out")  # before the work, not after
    print(f"drawing figures into {args.out}/", file=sys.stderr)
    written = plots.make_all(args.out, progress=_progress)
    print(f"wrote {len(written)} files to {args.out}/")
    return 0
