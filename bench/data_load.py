"""Benchmark: loading a dataset into memory, what every run does before its first step (``load_dataset``).

    python bench/data_load.py [--dataset fashion_mnist] [--data-dir DIR] [--repeats 3] [--json out.json]

Times ``samat.empirical.data.load_dataset`` in this interpreter ``--repeats`` times (the first load includes reading the
files from disk, the later ones mostly find them in the OS's page cache) and prints each time, the images per
second and the machine. The default, Fashion-MNIST from the Debian folder (four gzip idx files, 60,000 + 10,000
images), is what ``samat demo`` loads; the test suite checks what is loaded (shapes, classes, the normalization
constants), never how fast.
"""

from __future__ import annotations

import argparse
import time

from common import count, host, output_file, run, write_record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--data-dir", default=None, help="the dataset's folder (default: its usual place)")
    parser.add_argument("--repeats", type=count(1), default=3)
    parser.add_argument("--json", type=output_file, help="also write the figures here")
    args = parser.parse_args()
    from samat.empirical.data import load_dataset  # torch: after the arguments, so that --help is instant

    record = {"machine": host(), "dataset": args.dataset, "data_dir": args.data_dir, "seconds": []}
    for i in range(args.repeats):
        t0 = time.perf_counter()
        ds = load_dataset(args.dataset, args.data_dir)
        record["seconds"].append(round(time.perf_counter() - t0, 3))
        images = len(ds.train_y) + len(ds.test_y)
        print(f"load {i + 1}/{args.repeats}: {record['seconds'][-1]:.2f} s, {images:,} images "
              f"({images / record['seconds'][-1]:,.0f} per second)", flush=True)
    record["images"] = images
    print(f"machine: {record['machine']}")
    if args.json:
        write_record(args.json, record)
    return 0


if __name__ == "__main__":
    run(main)
