"""Benchmark: the CPU default, `samat demo` (theory report, then the Fashion-MNIST experiment), end to end.

    python bench/cpu_default.py [--json out.json] [--task segmentation|text]

Runs ``python -m samat demo --out DIR`` in a fresh interpreter with a fresh output directory (a temporary
one: nothing is reused), times the whole command, and splits the time into stages from the moments its
log lines arrive (theory; per run: training, then evaluation; the report and plots). Inside each stage it
adds what the run directories record: per-epoch training seconds (metrics.jsonl) and per-attack seconds
(eval.json). The target is at most 10 minutes on 2 cores; with ``--task segmentation`` (the Fashion-MNIST
scenes experiment alone, no theory) at most 5 minutes; with ``--task text`` (the tiny DistilBERT on the generated
corpus under TextAttack's PSO and IGA, no theory; needs the text extra) at most 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import host, output_file, write_record

RUN_LINE = re.compile(r"^\[(\d+)/(\d+)\] (.+), seed \d+ -> (\S+)")
TARGET_SECONDS = {"classification": 600, "segmentation": 300, "text": 300}


def run_demo(out: Path, task: str = "classification") -> tuple[float, list[tuple[float, str]], str]:
    """Run the demo; return its wall time, its stderr lines with arrival times, and its stdout."""
    t0 = time.perf_counter()
    command = [sys.executable, "-m", "samat", "demo", "--out", str(out), "--task", task]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    lines = []
    assert proc.stderr is not None and proc.stdout is not None
    for line in proc.stderr:
        lines.append((time.perf_counter() - t0, line.rstrip("\n")))
        print(f"{lines[-1][0]:7.1f} s  {lines[-1][1]}", file=sys.stderr, flush=True)
    stdout = proc.stdout.read()
    if proc.wait() != 0:
        raise SystemExit(f"samat demo failed with exit code {proc.returncode}")
    return time.perf_counter() - t0, lines, stdout


def stages(total: float, lines: list[tuple[float, str]], task: str = "classification") -> list[dict]:
    """Stage boundaries from the log: the theory until "[experiment]", the data until the first run, then per
    run "[i/N] ..." (training) and "evaluating ..." (evaluation); after the last log line, the report."""
    first = {"classification": "theory (figures and verification)",
             "text": "start (imports; the stand-ins and the tiny model written)"}.get(task, "start (imports)")
    marks: list[tuple[float, dict]] = [(0.0, {"stage": first})]
    current: dict = {}
    for t, text in lines:
        m = RUN_LINE.match(text)
        if text.startswith("[experiment]"):
            marks.append((t, {"stage": "load the data, set up the grid" if task == "text"
                              else "load Fashion-MNIST, set up the grid"}))
        elif m:
            current = {"label": m.group(3), "run_dir": m.group(4)}
            marks.append((t, {"stage": f"train {current['label']}"} | current))
        elif text.startswith("evaluating ") and current:
            marks.append((t, {"stage": f"evaluate {current['label']}"} | current))
    last_line = lines[-1][0] if lines else 0.0
    ends = [t for t, _ in marks[1:]] + [max(last_line, marks[-1][0])]
    rows = [row | {"seconds": end - t} for (t, row), end in zip(marks, ends, strict=True)]
    rows.append({"stage": "tables and plots (after the last log line)", "seconds": total - ends[-1]})
    return rows


def details(rows: list[dict]) -> None:
    """Add what the run directories record (training seconds per epoch, seconds per attack)."""
    for row in rows:
        run = row.get("run_dir")
        if not run:
            continue
        run = Path(run)
        if row["stage"].startswith("train") and (run / "metrics.jsonl").exists():
            metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
            row["epochs_train_seconds"] = [round(m["train_seconds"], 2) for m in metrics]
            row["epochs_test_seconds"] = [round(m["eval_seconds"], 2) for m in metrics]
        if row["stage"].startswith("evaluate") and (run / "eval.json").exists():
            attacks = json.loads((run / "eval.json").read_text())["attacks"]
            row["attack_seconds"] = {k: round(v["seconds"], 2) for k, v in attacks.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=output_file, help="also write the figures to this JSON file")
    parser.add_argument("--task", choices=tuple(TARGET_SECONDS), default="classification",
                        help="which demo: classification (default), segmentation or text")
    args = parser.parse_args(argv)
    target = TARGET_SECONDS[args.task]
    import torch

    info = host() | {"torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        total, lines, stdout = run_demo(Path(tmp) / "demo", args.task)
        rows = stages(total, lines, args.task)
        details(rows)
    info["load_average_after"] = os.getloadavg()[0]
    for row in rows:
        row.pop("run_dir", None)
    verdict = "met" if total <= target else "**missed**"
    command = "python bench/cpu_default.py" + ("" if args.task == "classification" else f" --task {args.task}")
    print(f"\n`{command}` — {info['cpu']}, {info['cpus']} CPUs, torch {info['torch']}, Python "
          f"{info['python']}, {info['date']}; 1-min load average {info['load_average_before']:.2f} before, "
          f"{info['load_average_after']:.2f} after\n")
    demo = "samat demo" + ("" if args.task == "classification" else f" --task {args.task}")
    print(f"`{demo}`, end to end: **{total:.0f} s** (target <= {target} s: {verdict})\n")
    print("| Stage | seconds | inside it |\n|---|---|---|")
    for row in rows:
        inside = ""
        if "epochs_train_seconds" in row:
            unit, test = ("epochs", "test accuracy") if args.task == "classification" else ("rounds", "test scores")
            inside = (f"{unit} {', '.join(f'{s:.1f}' for s in row['epochs_train_seconds'])} s + {test} "
                      f"{sum(row['epochs_test_seconds']):.1f} s")
        elif "attack_seconds" in row:
            top = sorted(row["attack_seconds"].items(), key=lambda kv: -kv[1])[:3]
            inside = ", ".join(f"{k} {v:.1f} s" for k, v in top) + (" (largest three)" if len(top) == 3 else "")
        print(f"| {row['stage']} | {row['seconds']:.1f} | {inside} |")
    if args.json:
        write_record(args.json, {"command": command, "machine": info, "seconds": total, "target_seconds": target,
                                 "stages": rows, "demo_stdout": stdout})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
