"""The GPU suite: one command that measures what a GPU machine is lent for, within a time budget, writing at most 8
files (Markdown and JSON) into OUT, each part's as soon as the part ends.

    python3 bench/gpu_suite.py OUT --quick --wheels .gpu/wheels --fashion-mnist .gpu/fashion-mnist   # 3 minutes
    python3 bench/gpu_suite.py OUT --wheels .gpu/wheels --fashion-mnist .gpu/fashion-mnist           # 9.5 minutes
    python3 bench/gpu_suite.py OUT --device cpu [--quick]        # a dry run on a CPU: the same parts and files
    python3 bench/gpu_suite.py --prepare .gpu                    # before, on a machine with the package registry

Parts, in order (each a subprocess in its own process group with a time limit; one that fails or runs out of
time is reported, with what it printed, and the suite goes on):

1. ``tests``: the GPU tests, ``pytest --run-gpu -m gpu -v`` (the fast step against the eager one in float32 and
   in the default bf16 configuration, no host syncs, the capture's device and generators, AutoAttack against the
   reference code on 256 images, TF32 against float32, batched Pixle on CUDA), with Fashion-MNIST's folder in
   SAMAT_FASHION_MNIST. A GPU test skipped for any reason but its marker (a missing dataset) fails the part; a
   part stopped at its limit names the test it was in (tests/conftest.py writes the running test's id to
   SAMAT_CURRENT_TEST);
2. ``train``: bench/train_throughput.py, ST, SAM and AT-PGD10 of PRN-18 at batch 128, the steady-state throughput
   and, apart, what compiling and capturing took once; full mode: eager, ours (compiled + CUDA graph) and the
   common loop, with the targets; quick: ours;
3. ``eval``: bench/eval_throughput.py, D Table 2's columns at full batches of 256 (2 per attack and bound), per
   10,000 images, with the targets;
4. ``experiment``: a short PRN-18 Fashion-MNIST experiment of ST, SAM and AT through ``samat experiment run``
   (the fast path, the evaluation, the report);
5. ``profile``: bench/profile_step.py, where an ST step's time goes, eager and ours;
6. ``accuracy``: bench/train_throughput.py's equal-accuracy runs (PRN-18 on Fashion-MNIST, ours and the common
   loop, 1 epoch of 10,000 images);
7. ``plan``: ``samat experiment plan cifar10`` (D Table 2 and W Table 2, 3 seeds) on this device, if time is left.

``--quick`` runs the first two (the training bench for ST, SAM and AT, the GPU tests with the AutoAttack
cross-check) in 175 s, for a 15-minute device slot that must leave room for a second try. The full mode gives
the first four the budget and the last three what is left; ``--parts`` picks some (a second call finishes what a
first had no time for). The caps (CAPS) are set for a cold inductor cache, which the suite makes sure of: it
compiles into a fresh folder (``--inductor-cache`` names another, e.g. a warm one for a second call), and the
benches report compilation apart from the steady state. Files in OUT: summary.md (every part's outcome and
figures), suite.json (the same as data), train.json, eval.json, profile.json, accuracy.json and experiment.md;
the JSON of a bench is copied as soon as its part ends, and a bench stopped at its limit leaves the figures of
the methods or attacks it finished (it writes them as it goes).

The machine needs python3 with torch, numpy, scipy, sympy, matplotlib, pytest and hypothesis; ``--wheels`` names
a folder of the other packages' wheels (torchattacks, pytorch-optimizer, pyautoattack without its example
models), installed with ``pip install --no-index --no-deps --target`` into a temporary folder put on
PYTHONPATH with the repository; ``--fashion-mnist`` the folder of the four Fashion-MNIST ``.gz`` files.
``--prepare DIR`` makes both on a machine with the package registry (see docs/GPU.md). With ``--device cpu`` it
is a dry run: tiny sizes, the small CNN, the GPU tests collected and skipped by their marker, the same parts and
file names.
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
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARTS = ("tests", "train", "eval", "experiment", "profile", "accuracy", "plan")
QUICK_PARTS = ("tests", "train")
REQUIRED = ("tests", "train", "eval", "experiment")  # the full mode's; the others take what time is left
# Seconds at most, with a cold inductor cache: compiling PRN-18's graphs (ST, SAM's second pass, PGD's attack
# pass: about 2-3 minutes together on an H100 machine, an estimate) falls in "train", the small networks' in
# "tests", PRN-18 at Fashion-MNIST's shape again in "experiment".
CAPS = {"tests": 150, "train": 170, "eval": 100, "experiment": 120, "profile": 60, "accuracy": 100, "plan": 150}
QUICK_CAPS = {"tests": 95, "train": 70}
BUDGET, QUICK_BUDGET = 560.0, 175.0  # one command of at most 10 minutes; 3 minutes
DRY_BUDGET = 1800.0  # a dry run on 2 busy CPU cores
RESERVE = 20  # seconds kept for each required part still to come
WHEELS = ("torchattacks==3.5.1", "pytorch-optimizer==4.1.0", "pyautoattack==0.2.0")
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
MARKER_SKIPS = ("needs a CUDA GPU: run with --run-gpu", "slow test: run with --run-slow")  # tests/conftest.py
FILES = ("summary.md", "suite.json", "train.json", "eval.json", "profile.json", "accuracy.json", "experiment.md")

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
    json_out: Path | None = None  # the part's own JSON (copied to OUT as soon as the part ends)
    outcome: dict = field(default_factory=dict)


def parts(args: argparse.Namespace, work: Path) -> list[Part]:
    """Every part's command, sized for the device (a CPU: the dry run's tiny sizes) and the mode (``--quick``)."""
    py, dry, quick, dev = sys.executable, args.device == "cpu", args.quick, ["--device", args.device]
    data = ["--data-dir", str(args.fashion_mnist)] if args.fashion_mnist else []
    experiment = work / "experiment.toml"
    experiment.write_text(EXPERIMENT.format(
        columns='["natural", "fgsm_linf@1/255"]' if dry else
        '["natural", "pgd10_linf@1/255", "pgd10_l2@32/255", "pixle", "stadv"]',
        n_eval=16 if dry else 512, model="small_cnn" if dry else "prn18", train=512 if dry else 10_000,
        model_name="small CNN" if dry else "PRN-18", test=128 if dry else 2000, epochs=1 if dry else 2))
    exp_set = ["--set", f"device={args.device}"] + (["--set", f"data_dir={args.fashion_mnist}"]
                                                     if args.fashion_mnist else [])
    train = [py, "bench/train_throughput.py", *dev, "--json", str(work / "train.json"), "--skip-accuracy"]
    if dry:  # the plumbing: ST's timing (PRN-18 at batch 32 on a CPU takes seconds a step)
        train += ["--quick", "--methods", "st", "--loops", "ours" if quick else "ours,baseline"]
    elif quick:  # steady state of what train() runs, ST, SAM and AT; compilation reported apart
        train += ["--loops", "ours", "--warmup", "3", "--steps", "30", "--at-steps-timed", "8"]
    else:
        train += ["--loops", "eager,ours,baseline", "--warmup", "5", "--steps", "40", "--at-steps-timed", "12"]
    accuracy = [py, "bench/train_throughput.py", *dev, "--json", str(work / "accuracy.json"), "--accuracy-only",
                *data]
    accuracy += ["--quick", "--methods", "st", "--acc-train", "512", "--acc-test", "128"] if dry else \
        ["--acc-epochs", "1", "--acc-train", "10000", "--acc-test", "2000"]
    evaluation = [py, "bench/eval_throughput.py", *dev, "--json", str(work / "eval.json")]
    evaluation += ["--quick", "--bounds", "falls at once", "--columns", "fgsm_linf@1/255", "pixle"] if dry else \
        ["--batch-size", "256", "--batches", "2"]
    profile = [py, "bench/profile_step.py", *dev, "--json", str(work / "profile.json")]
    profile += ["--quick"] if dry else ["--methods", "st", "--loops", "eager,ours", "--warmup", "5", "--steps", "10"]
    tests = [py, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "no:randomly", "--durations=15", "-m", "gpu",
             f"--junitxml={work / 'tests.xml'}", "tests"] + ([] if dry else ["--run-gpu"])
    every = [
        Part("tests", tests),
        Part("train", train, work / "train.json"),
        Part("eval", evaluation, work / "eval.json"),
        Part("experiment", [py, "-m", "samat", "experiment", "run", str(experiment), "--runs-dir",
                            str(work / "runs"), "--no-progress", "--report", str(work / "report"), *exp_set]),
        Part("profile", profile, work / "profile.json"),
        Part("accuracy", accuracy, work / "accuracy.json"),
        Part("plan", [py, "-m", "samat", "experiment", "plan", str(experiment) if dry else "cifar10", *dev]),
    ]
    return [p for p in every if not quick or p.name in QUICK_PARTS]


def run_part(part: Part, env: dict, limit: float, work: Path) -> None:
    """Run the part's command in its own process group, killed with its children at ``limit`` seconds."""
    out, err = work / f"{part.name}.out", work / f"{part.name}.err"
    current = work / "current_test"
    current.write_text("")
    t0 = time.monotonic()
    with out.open("w") as fo, err.open("w") as fe:
        proc = subprocess.Popen(part.command, cwd=REPO, env=env | {"SAMAT_CURRENT_TEST": str(current)}, stdout=fo,
                                stderr=fe, start_new_session=True)
        try:
            code = proc.wait(timeout=limit)
            status = "ok" if code == 0 else f"failed (exit code {code})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = f"stopped at its time limit ({limit:.0f} s)" + running_test(current)
    part.outcome = {"part": part.name, "status": status, "seconds": round(time.monotonic() - t0, 1),
                    "limit_seconds": round(limit), "command": " ".join(part.command),
                    "stdout": out.read_text(), "stderr_tail": err.read_text().splitlines()[-40:]}
    if part.name == "tests" and status == "ok":
        part.outcome.update(judge_tests(work / "tests.xml"))


def running_test(current: Path) -> str:
    """" in TEST (after N s in it)" from the file tests/conftest.py keeps (empty between tests)."""
    try:
        nodeid, started = current.read_text().strip().split("\t")
    except (OSError, ValueError):
        return ""
    return f" in {nodeid} (after {time.time() - float(started):.0f} s in it)"


def judge_tests(junit: Path) -> dict:
    """The GPU tests' counts from pytest's JUnit XML; a test skipped for another reason than its marker (a missing
    dataset, no CUDA) fails the part: the suite is there to run them."""
    try:
        cases = ET.parse(junit).getroot().iter("testcase")
    except (OSError, ET.ParseError) as err:
        return {"status": f"failed (pytest's report {junit.name} cannot be read: {err})"}
    counts = {"passed": 0, "skipped": 0, "failed": 0}
    unexpected = []
    for case in cases:
        skipped = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
        elif skipped is not None:
            counts["skipped"] += 1
            reason = skipped.get("message", "")
            if not reason.startswith(MARKER_SKIPS):
                unexpected.append(f"{case.get('classname')}.{case.get('name')}: {reason}")
        else:
            counts["passed"] += 1
    outcome: dict = {"tests": counts, "skipped_unexpectedly": unexpected}
    if unexpected:
        outcome["status"] = (f"failed ({len(unexpected)} GPU test(s) skipped: {unexpected[0]}"
                             + (", ..." if len(unexpected) > 1 else "") + ")")
    return outcome


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


def summary(parts_run: list[Part], info: dict, budget: float, total: float, mode: str) -> str:
    lines = [f"# GPU suite ({mode}), {info['date']}", "",
             f"{info.get('gpu') or info.get('device')}, torch {info.get('torch')} (CUDA {info.get('cuda')}), Python "
             f"{info['python']}, {info['cpus']} CPUs; {total:.0f} s of a {budget:.0f} s budget.", "",
             "| Part | outcome | seconds (limit) |", "|---|---|---|"]
    lines += [f"| {p.name} | {p.outcome.get('status', 'not run yet')} | "
              + (f"{p.outcome['seconds']:.0f} ({p.outcome['limit_seconds']}) |" if p.outcome else "— |")
              for p in parts_run]
    for p in parts_run:
        if not p.outcome:
            continue
        lines += ["", f"## {p.name}", "", f"`{p.outcome['command']}`: {p.outcome['status']}", ""]
        text = p.outcome["stdout"].strip()
        if p.name == "tests":  # pytest -v's last lines: the tests' outcomes, the slowest, the count
            if "tests" in p.outcome:
                lines += [", ".join(f"{n} {k}" for k, n in p.outcome["tests"].items()), ""]
            lines += ["```", "\n".join(text.splitlines()[-60:]), "```"]
        elif text:
            lines.append(text)
        if p.outcome["status"] != "ok":
            lines += ["", "Last lines of its error output:", "", "```", *p.outcome["stderr_tail"], "```"]
    return "\n".join(lines) + "\n"


def publish(out: Path, work: Path, todo: list[Part], info: dict, budget: float, start: float, mode: str) -> None:
    """Everything known so far into OUT (after each part: a suite stopped later leaves the parts it finished)."""
    for part in todo:
        if part.outcome and part.json_out is not None and part.json_out.exists():
            shutil.copy2(part.json_out, out / part.json_out.name)
    report = work / "report" / "table.md"
    if report.exists():
        shutil.copy2(report, out / "experiment.md")
    total = time.monotonic() - start
    (out / "summary.md").write_text(summary(todo, info, budget, total, mode))
    (out / "suite.json").write_text(json.dumps({"mode": mode, "machine": info, "budget_seconds": budget,
                                                "seconds": total, "parts": [p.outcome or {"part": p.name,
                                                                                          "status": "not run yet"}
                                                                            for p in todo]}, indent=2))


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
    parser.add_argument("--quick", action="store_true",
                        help=f"the GPU tests and the training bench only ({QUICK_BUDGET:.0f} s): for a short slot")
    parser.add_argument("--wheels", type=Path, help="folder of wheels to install (torchattacks, pytorch-optimizer, "
                        "pyautoattack)")
    parser.add_argument("--fashion-mnist", type=Path, help="folder of the four Fashion-MNIST .gz files")
    parser.add_argument("--budget", type=float, help=f"seconds for all parts (default {BUDGET:.0f}; "
                        f"{QUICK_BUDGET:.0f} with --quick; {DRY_BUDGET:.0f} for a dry run on a CPU, whose parts "
                        "have no caps)")
    parser.add_argument("--parts", help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--inductor-cache", type=Path,
                        help="inductor's cache folder (default: a fresh one, so that the budgets meet a cold cache)")
    parser.add_argument("--prepare", type=Path, metavar="DIR", help="make the wheels and data folder, then stop")
    args = parser.parse_args(argv)
    if args.prepare:
        return prepare(args.prepare)
    dry = args.device == "cpu"
    mode = ("quick" if args.quick else "full") + (" dry run on the CPU" if dry else "")
    chosen = [p.strip() for p in (args.parts or ",".join(QUICK_PARTS if args.quick else PARTS)).split(",")
              if p.strip()]
    if args.out is None or not chosen or not set(chosen) <= set(QUICK_PARTS if args.quick else PARTS):
        parser.error(f"give OUT, and --parts from {','.join(QUICK_PARTS if args.quick else PARTS)}")
    if args.budget is not None and args.budget <= 0:
        parser.error(f"--budget={args.budget:g} is invalid: it must be > 0 seconds")
    budget = args.budget or (DRY_BUDGET if dry else QUICK_BUDGET if args.quick else BUDGET)
    caps = QUICK_CAPS if args.quick else CAPS
    if args.fashion_mnist is None and Path(FASHION_MNIST, "train-images-idx3-ubyte.gz").exists():
        args.fashion_mnist = Path(FASHION_MNIST)
    start = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-suite-"))
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "4"),
               TORCHINDUCTOR_CACHE_DIR=str((args.inductor_cache or work / "inductor").resolve()))
    path = [str(REPO)]
    if args.wheels:
        install_wheels(args.wheels.resolve(), work / "site")
        path.insert(0, str(work / "site"))
    env["PYTHONPATH"] = os.pathsep.join(path + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if args.fashion_mnist:
        args.fashion_mnist = args.fashion_mnist.resolve()
        env["SAMAT_FASHION_MNIST"] = str(args.fashion_mnist)  # the GPU tests' Fashion-MNIST (data/fashion_mnist.py)
    info = machine(args.device)
    todo = [p for p in parts(args, work) if p.name in chosen]
    publish(args.out, work, todo, info, budget, start, mode)
    for i, part in enumerate(todo):
        left = budget - (time.monotonic() - start)
        later = sum(RESERVE for p in todo[i + 1:] if p.name in REQUIRED)  # a little for each required part to come
        limit = left - later if dry else min(caps[part.name], left - later)
        if limit < 10:
            part.outcome = {"part": part.name, "status": "skipped: the budget is spent", "seconds": 0,
                            "limit_seconds": 0, "command": " ".join(part.command), "stdout": "", "stderr_tail": []}
        else:
            print(f"[gpu suite] {part.name} (at most {limit:.0f} s)", file=sys.stderr, flush=True)
            run_part(part, env, limit, work)
            print(f"[gpu suite] {part.name}: {part.outcome['status']} in {part.outcome['seconds']:.0f} s",
                  file=sys.stderr, flush=True)
        publish(args.out, work, todo, info, budget, start, mode)
    shutil.rmtree(work, ignore_errors=True)
    print(f"[gpu suite] {time.monotonic() - start:.0f} s; wrote {', '.join(sorted(p.name for p in args.out.iterdir()))}"
          f" to {args.out}", file=sys.stderr)
    return 0 if all(p.outcome["status"] == "ok" for p in todo) else 1


if __name__ == "__main__":
    raise SystemExit(main())
