"""The GPU suite: one command that measures what a GPU machine is lent for, within a time budget (default 470 s,
for 8 minutes on one H100/H200), writing at most 8 files (Markdown and JSON) into OUT.

    python3 bench/gpu_suite.py OUT --wheels .gpu/wheels --fashion-mnist .gpu/fashion-mnist   # on the GPU machine
    python3 bench/gpu_suite.py OUT --device cpu --quick                                       # a dry run on a CPU
    python3 bench/gpu_suite.py --prepare .gpu                                                 # before: the folder

Parts, in order (each a subprocess with a time limit; one that fails or runs out of time is reported and the
suite goes on):

1. ``tests``: the GPU tests, ``pytest --run-gpu -m gpu`` (the fast step against the eager one, no host syncs,
   AutoAttack against the reference code, TF32 against float32, batched Pixle on CUDA);
2. ``train``: bench/train_throughput.py, ST, SAM and AT-PGD10 of PRN-18 at batch 128: eager, ours (compiled +
   CUDA graph) and the common loop, with the targets;
3. ``eval``: bench/eval_throughput.py, D Table 2's columns at full batches of 256 (2 per attack and bound), per
   10,000 images, with the targets;
4. ``experiment``: a short PRN-18 Fashion-MNIST experiment of ST, SAM and AT through ``samat experiment run``
   (the fast path, the evaluation, the report);
5. ``profile``: bench/profile_step.py, where an ST step's time goes, eager and ours;
6. ``accuracy``: bench/train_throughput.py's equal-accuracy runs (PRN-18 on Fashion-MNIST, ours and the common
   loop, 1 epoch of 10,000 images);
7. ``plan``: ``samat experiment plan cifar10`` (D Table 2 and W Table 2, 3 seeds) on this device, if time is left.

The first four are the issue's and are given the budget (120 + 150 + 90 + 110 s); the last three take what is
left, and ``--parts`` picks some of them (a second call finishes what a first one had no time for; a part
stopped at its limit still shows the lines it printed, e.g. every timed method). Files in OUT:
summary.md (every part's tables and outcome), suite.json (the same as data), train.json, eval.json,
profile.json, accuracy.json, experiment.md: 7.

The machine needs python3 with torch, numpy, scipy, sympy, matplotlib, pytest and hypothesis; ``--wheels`` names
a folder of the other packages' wheels (torchattacks, pytorch-optimizer, pyautoattack without its example
models), installed with ``pip install --no-index --no-deps --target`` into a temporary folder put on
PYTHONPATH with the repository; ``--fashion-mnist`` the folder of the four Fashion-MNIST ``.gz`` files.
``--prepare DIR`` makes both on a machine with the package registry (see docs/GPU.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARTS = ("tests", "train", "eval", "experiment", "profile", "accuracy", "plan")
REQUIRED = ("tests", "train", "eval", "experiment")  # the issue's; the others take what time is left
CAPS = {"tests": 120, "train": 150, "eval": 90, "experiment": 110, "profile": 50, "accuracy": 100,
        "plan": 150}  # seconds, at most
WHEELS = ("torchattacks==3.5.1", "pytorch-optimizer==4.1.0", "pyautoattack==0.2.0")
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

EXPERIMENT = """# The GPU suite's short experiment: PRN-18 on Fashion-MNIST, ST, SAM and AT, evaluated.
[experiment]
name = "gpu-suite"
title = "Fashion-MNIST, {model_name} (GPU suite): ST, SAM and AT"
seeds = [0]
columns = {columns}
n_eval = {n_eval}

[base]
dataset = "fashion_mnist"
model = "{model}"
train_subset = {train}
test_subset = {test}
epochs = {epochs}
batch_size = 128

[[run]]
label = "ST (SGD)"
method = "sgd"

[[run]]
label = "SAM (ρ=0.1)"
method = "sam"
rho = 0.1

[[run]]
label = "ℓ∞-AT (ε=8/255)"
method = "pgd_at"
at_norm = "linf"
at_eps = "8/255"
"""


@dataclass
class Part:
    name: str
    command: list[str]
    json_out: Path | None = None  # the part's own JSON (copied to OUT)
    outcome: dict = field(default_factory=dict)


def parts(args: argparse.Namespace, work: Path) -> list[Part]:
    """Every part's command, sized for the device (``--quick``: a CPU dry run of the same commands)."""
    py, q, dev = sys.executable, args.quick, ["--device", args.device]
    data = ["--data-dir", str(args.fashion_mnist)] if args.fashion_mnist else []
    experiment = work / "experiment.toml"
    experiment.write_text(EXPERIMENT.format(
        columns='["natural", "fgsm_linf@1/255"]' if q else
        '["natural", "pgd10_linf@1/255", "pgd10_l2@32/255", "pixle", "stadv"]',
        n_eval=16 if q else 512, model="small_cnn" if q else "prn18", train=512 if q else 10_000,
        model_name="small CNN" if q else "PRN-18",
        test=128 if q else 2000, epochs=1 if q else 2))
    exp_set = ["--set", f"device={args.device}"] + (["--set", f"data_dir={args.fashion_mnist}"]
                                                     if args.fashion_mnist else [])
    train = [py, "bench/train_throughput.py", *dev, "--json", str(work / "train.json"), "--skip-accuracy"]
    train += ["--quick", "--methods", "st"] if q else \
        ["--loops", "eager,ours,baseline", "--warmup", "5", "--steps", "40", "--at-steps-timed", "12"]
    accuracy = [py, "bench/train_throughput.py", *dev, "--json", str(work / "accuracy.json"), "--accuracy-only",
                *data]
    accuracy += ["--quick", "--methods", "st", "--acc-train", "512", "--acc-test", "128"] if q else \
        ["--acc-epochs", "1", "--acc-train", "10000", "--acc-test", "2000"]
    evaluation = [py, "bench/eval_throughput.py", *dev, "--json", str(work / "eval.json")]
    evaluation += ["--quick", "--bounds", "falls at once", "--columns", "fgsm_linf@1/255", "pixle"] if q else \
        ["--batch-size", "256", "--batches", "2"]
    profile = [py, "bench/profile_step.py", *dev, "--json", str(work / "profile.json")]
    profile += ["--quick"] if q else ["--methods", "st", "--loops", "eager,ours", "--warmup", "5", "--steps", "10"]
    return [
        Part("tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests"]
             + ([] if q else ["--run-gpu"])),
        Part("train", train, work / "train.json"),
        Part("eval", evaluation, work / "eval.json"),
        Part("experiment", [py, "-m", "samat", "experiment", "run", str(experiment), "--runs-dir",
                            str(work / "runs"), "--no-progress", "--report", str(work / "report"), *exp_set]),
        Part("profile", profile, work / "profile.json"),
        Part("accuracy", accuracy, work / "accuracy.json"),
        Part("plan", [py, "-m", "samat", "experiment", "plan", str(experiment) if q else "cifar10", *dev]),
    ]


def run_part(part: Part, env: dict, limit: float, logs: Path) -> None:
    """Run the part's command in its own process group, killed with its children at ``limit`` seconds."""
    out, err = logs / f"{part.name}.out", logs / f"{part.name}.err"
    t0 = time.monotonic()
    with out.open("w") as fo, err.open("w") as fe:
        proc = subprocess.Popen(part.command, cwd=REPO, env=env, stdout=fo, stderr=fe, start_new_session=True)
        try:
            code = proc.wait(timeout=limit)
            status = "ok" if code == 0 else f"failed (exit code {code})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = f"stopped at its time limit ({limit:.0f} s)"
    part.outcome = {"part": part.name, "status": status, "seconds": round(time.monotonic() - t0, 1),
                    "limit_seconds": round(limit), "command": " ".join(part.command),
                    "stdout": out.read_text(), "stderr_tail": err.read_text().splitlines()[-40:]}


def install_wheels(wheels: Path, site: Path) -> None:
    """The wheels into ``site`` with pip, offline and without dependencies (they are pure Python)."""
    files = sorted(str(p) for p in wheels.glob("*.whl"))
    if not files:
        raise SystemExit(f"gpu_suite: error: no .whl files in {wheels}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(site),
                    *files], check=True)


def machine(device: str) -> dict:
    code = ("import json, torch; d = torch.device(%r if %r != 'auto' else ('cuda' if torch.cuda.is_available() "
            "else 'cpu')); print(json.dumps({'torch': torch.__version__, 'device': str(d), 'gpu': "
            "torch.cuda.get_device_name(d) if d.type == 'cuda' else None, 'cuda': torch.version.cuda}))")
    probe = subprocess.run([sys.executable, "-c", code % (device, device)], capture_output=True, text=True)
    info = json.loads(probe.stdout) if probe.returncode == 0 else {"probe_error": probe.stderr[-500:]}
    return info | {"python": sys.version.split()[0], "cpus": os.cpu_count(), "date": dt.datetime.now().isoformat(
        timespec="seconds"), "load_average_before": os.getloadavg()[0]}


def summary(parts_run: list[Part], info: dict, budget: float, total: float) -> str:
    lines = [f"# GPU suite, {info['date']}", "",
             f"{info.get('gpu') or info.get('device')}, torch {info.get('torch')} (CUDA {info.get('cuda')}), Python "
             f"{info['python']}, {info['cpus']} CPUs; {total:.0f} s of a {budget:.0f} s budget.", "",
             "| Part | outcome | seconds (limit) |", "|---|---|---|"]
    lines += [f"| {p.name} | {p.outcome['status']} | {p.outcome['seconds']:.0f} ({p.outcome['limit_seconds']}) |"
              for p in parts_run]
    for p in parts_run:
        lines += ["", f"## {p.name}", "", f"`{p.outcome['command']}`: {p.outcome['status']}", ""]
        text = p.outcome["stdout"].strip()
        if p.name == "tests":  # pytest's last lines: the failures and the count
            text = "\n".join(text.splitlines()[-30:])
            lines += ["```", text, "```"]
        elif text:
            lines.append(text)
        if p.outcome["status"] != "ok":
            lines += ["", "Last lines of its error output:", "", "```", *p.outcome["stderr_tail"], "```"]
    return "\n".join(lines) + "\n"


def prepare(folder: Path) -> int:
    """Download the wheels the GPU machine lacks, slim pyautoattack, copy Fashion-MNIST (needs the registry)."""
    wheels = folder / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux2014_x86_64",
                    "-d", str(wheels), *WHEELS], check=True)
    for wheel in wheels.glob("pyautoattack-*.whl"):
        slim_wheel(wheel)
    target = folder / "fashion-mnist"
    target.mkdir(exist_ok=True)
    for gz in Path(FASHION_MNIST).glob("*-ubyte.gz"):
        shutil.copy2(gz, target / gz.name)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"{folder}: {len(list(wheels.glob('*.whl')))} wheels, {len(list(target.glob('*.gz')))} Fashion-MNIST "
          f"files, {size / 2**20:.1f} MiB")
    return 0


def slim_wheel(wheel: Path) -> None:
    """Rewrite a wheel without its ``examples/`` folder (pyautoattack ships 45 MB of example models there),
    with a RECORD that lists only what is left (pip checks nothing else)."""
    with zipfile.ZipFile(wheel) as src:
        kept = [i for i in src.infolist() if "/examples/" not in i.filename]
        contents = {i.filename: src.read(i) for i in kept}
    record = next(name for name in contents if name.endswith(".dist-info/RECORD"))
    lines = [line for line in contents[record].decode().splitlines() if line.split(",")[0] in contents]
    contents[record] = ("\n".join(lines) + "\n").encode()
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, data in contents.items():
            dst.writestr(name, data)
    tmp.replace(wheel)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, help="folder for the result files (at most 8)")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a dry run of every part on a CPU")
    parser.add_argument("--wheels", type=Path, help="folder of wheels to install (torchattacks, pytorch-optimizer, "
                        "pyautoattack)")
    parser.add_argument("--fashion-mnist", type=Path, help="folder of the four Fashion-MNIST .gz files")
    parser.add_argument("--budget", type=float, default=470.0, help="seconds for all parts (default 470)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--prepare", type=Path, metavar="DIR", help="make the wheels and data folder, then stop")
    args = parser.parse_args(argv)
    if args.prepare:
        return prepare(args.prepare)
    chosen = [p.strip() for p in args.parts.split(",") if p.strip()]
    if args.out is None or not chosen or not set(chosen) <= set(PARTS):
        parser.error(f"give OUT, and --parts from {','.join(PARTS)}")
    if args.fashion_mnist is None and Path(FASHION_MNIST, "train-images-idx3-ubyte.gz").exists():
        args.fashion_mnist = Path(FASHION_MNIST)
    start = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-suite-"))
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "4"))
    path = [str(REPO)]
    if args.wheels:
        install_wheels(args.wheels.resolve(), work / "site")
        path.insert(0, str(work / "site"))
    env["PYTHONPATH"] = os.pathsep.join(path + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if args.fashion_mnist:
        args.fashion_mnist = args.fashion_mnist.resolve()
    info = machine(args.device)
    todo = [p for p in parts(args, work) if p.name in chosen]
    for i, part in enumerate(todo):
        left = args.budget - (time.monotonic() - start)
        later = sum(20 for p in todo[i + 1:] if p.name in REQUIRED)  # a little for each required part to come
        limit = min(CAPS[part.name], left - later) if not args.quick else left
        if limit < 10:
            part.outcome = {"part": part.name, "status": "skipped: the budget is spent", "seconds": 0,
                            "limit_seconds": 0, "command": " ".join(part.command), "stdout": "", "stderr_tail": []}
            continue
        print(f"[gpu suite] {part.name} (at most {limit:.0f} s)", file=sys.stderr, flush=True)
        run_part(part, env, limit, work)
        print(f"[gpu suite] {part.name}: {part.outcome['status']} in {part.outcome['seconds']:.0f} s",
              file=sys.stderr, flush=True)
    report = work / "report" / "table.md"
    if report.exists():
        shutil.copy2(report, args.out / "experiment.md")
    for part in todo:
        if part.json_out is not None and part.json_out.exists():
            shutil.copy2(part.json_out, args.out / part.json_out.name)
    total = time.monotonic() - start
    (args.out / "summary.md").write_text(summary(todo, info, args.budget, total))
    (args.out / "suite.json").write_text(json.dumps({"machine": info, "budget_seconds": args.budget,
                                                     "seconds": total, "parts": [p.outcome for p in todo]},
                                                    indent=2))
    shutil.rmtree(work, ignore_errors=True)
    print(f"[gpu suite] {total:.0f} s; wrote {', '.join(sorted(p.name for p in args.out.iterdir()))} to {args.out}",
          file=sys.stderr)
    return 0 if all(p.outcome["status"] == "ok" for p in todo) else 1


if __name__ == "__main__":
    raise SystemExit(main())
