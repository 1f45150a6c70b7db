"""Benchmark: the whole `samat theory verify` run (default grid), end to end in a fresh process.

    python bench/theory_verify.py [--repeats 3]

Each repeat is a new interpreter, so imports and the sympy derivations are counted every time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

from common import count, host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=count(1), default=3)
    args = parser.parse_args()
    seconds = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "samat", "theory", "verify", "--out", out],
                                  capture_output=True, text=True)
            seconds.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"samat theory verify failed (exit {done.returncode}):\n{done.stderr}")
    print(json.dumps({"command": "samat theory verify --out DIR", "seconds": seconds, "best": min(seconds),
                      "machine": host()}, indent=2))


if __name__ == "__main__":
    main()
