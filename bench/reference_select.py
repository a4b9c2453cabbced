#!/usr/bin/python3
"""Reference timing for `covidct bench select`: the authors' vectorised slice selection.

For every TIFF in each series folder (a folder holding .tif/.tiff files; folders are searched
recursively, like covidct's study layout): `cv2.imread(path, cv2.IMREAD_UNCHANGED)`, count
`img[240:340, 120:370] < 300`, then per series `threshold = (max - min) / 1.5` and select the
slices whose count is strictly above it. This is what Rahimzadeh et al.'s published code does
with numpy and OpenCV (the fixed 512x512 region, as in their code). Folders are listed once,
before any timing (covidct's own figure includes listing them on every run).

Two modes, both after one warm-up run over all series:
  --runs N   N timed runs; prints one JSON document with the median and the best run:
             { "name", "runs", "slices", "msPerRun", "msPerSlice", "bestMsPerSlice",
               "slicesPerSecond", "runMs", "env", "versions", "series": [...] }
  --serve    prints the same document without timings as one line, then times one run per
             line "run" read on stdin and answers each with a line { "ms": ... }; exits at EOF.
             `covidct bench select` drives it this way to alternate the reference's runs with
             its own, so that load from other processes falls on both alike.
"env" holds the MALLOC_* variables the process was started with (glibc's allocator settings).
Run with Debian's /usr/bin/python3 (numpy, cv2).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import cv2
import numpy as np


def series_folders(root):
    """Folders under root (root included) that hold TIFF files, in name order, with their sorted files."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        tifs = sorted(f for f in filenames if f.lower().endswith((".tif", ".tiff")) and not f.startswith("."))
        if tifs:
            found.append((dirpath, [os.path.join(dirpath, f) for f in tifs]))
    return found


def select(files):
    counts = []
    for path in files:
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise SystemExit(f"{path}: OpenCV cannot read it")
        counts.append(int(np.count_nonzero(img[240:340, 120:370] < 300)))
    threshold = (max(counts) - min(counts)) / 1.5
    return counts, threshold, [c > threshold for c in counts]


def timed_run(series):
    start = time.perf_counter()
    for _, _, files in series:
        select(files)
    return (time.perf_counter() - start) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="series or study folders of TIFF slices")
    parser.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up run")
    parser.add_argument("--serve", action="store_true", help='time one run per "run" line on stdin')
    args = parser.parse_args()

    series = []
    for root in args.paths:
        for folder, files in series_folders(root):
            rel = os.path.relpath(folder, root)
            series.append((root, rel if rel != "." else os.path.basename(os.path.normpath(root)), files))
    if not series:
        raise SystemExit(f"{', '.join(args.paths)}: no TIFF files found")
    slices = sum(len(files) for _, _, files in series)

    results = [select(files) for _, _, files in series]  # warm-up: page cache, imports, allocator
    doc = {
        "name": "numpy+opencv",
        "slices": slices,
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_")},
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__},
        "series": [
            {
                "folder": rel.replace(os.sep, "/"),
                "files": [os.path.basename(f) for f in files],
                "darkPixels": counts,
                "threshold": threshold,
                "selected": selected,
            }
            for (_, rel, files), (counts, threshold, selected) in zip(series, results)
        ],
    }
    if args.serve:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()
        for line in sys.stdin:
            if line.strip() != "run":
                raise SystemExit(f"unknown request {line.strip()!r}, expected 'run'")
            sys.stdout.write(json.dumps({"ms": timed_run(series)}) + "\n")
            sys.stdout.flush()
        return

    times = [timed_run(series) for _ in range(max(1, args.runs))]
    ms_per_run = statistics.median(times)
    doc.update(
        {
            "runs": len(times),
            "msPerRun": ms_per_run,
            "msPerSlice": ms_per_run / slices,
            "bestMsPerSlice": min(times) / slices,
            "slicesPerSecond": slices * 1000 / ms_per_run,
            "runMs": times,
        }
    )
    json.dump(doc, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
