"""``samat demo``: the main job on the embedded default, end to end.

For now: the theory verification report and its figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from theory.errors import SamatError


def add_command(sub) -> None:
    demo = sub.add_parser("demo", help="run the main job on the embedded default (theory report and figures)",
                          description="Verify Theorems 1-5 and draw the figures into OUT/ (default results/demo).")
    demo.add_argument("--out", type=Path, default=Path("results/demo"), metavar="DIR", help="output directory")
    demo.add_argument("--force", action="store_true", help="redo and overwrite finished parts")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from theory import plots, report, verify

    out: Path = args.out
    theory_dir, figures_dir = out / "theory", out / "theory" / "figures"
    report_paths = [theory_dir / "verification.json", theory_dir / "verification.md"]
    t0 = time.perf_counter()
    if plots.existing_outputs(figures_dir) and not args.force:
        print(f"figures: already in {figures_dir}/ (kept; --force redraws)", file=sys.stderr)
    else:
        print(f"[1/2] drawing the theory figures into {figures_dir}/", file=sys.stderr)
        plots.make_all(figures_dir, progress=lambda m: print(f"  {m}", file=sys.stderr))
    if all(p.exists() for p in report_paths) and not args.force:
        print(f"report: already in {theory_dir}/ (kept; --force redoes it)", file=sys.stderr)
    else:
        print(f"[2/2] verifying Theorems 1-5 into {theory_dir}/", file=sys.stderr)
        t1 = time.perf_counter()
        reports = verify.run(verify.Grid(), progress=lambda m: print(f"  {m}", file=sys.stderr))
        theory_dir.mkdir(parents=True, exist_ok=True)
        report.write_json(reports, report_paths[0])
        report.write_markdown(reports, report_paths[1], verify.Grid(), figures_dir, time.perf_counter() - t1)
    if not report_paths[1].exists():
        raise SamatError(f"{report_paths[1]} was not written")
    print(_summary(report_paths[0]))
    print(f"done in {time.perf_counter() - t0:.0f} s: read {report_paths[1]}")
    return 0


def _summary(json_path: Path) -> str:
    import json

    rows = json.loads(json_path.read_text())
    lines = ["", f"{'claim':6s}{'verdict':9s}{'max rel. error':>16s}  corrected statement"]
    for r in rows:
        err = r["max_rel_error"]
        corrected = f"{r['corrected']}  [{r['corrected_verdict']}]" if r["corrected"] else "—"
        lines.append(f"{r['theorem']:6s}{r['verdict']:9s}{'—' if err is None else f'{err:.3g}':>16s}  {corrected}")
    return "\n".join(lines)
