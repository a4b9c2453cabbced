#!/usr/bin/python3
"""Reference timing for `covidct bench select`: the authors' vectorised slice selection.

For every TIFF in each series folder (a folder holding .tif/.tiff files; folders are searched
recursively, like covidct's study layout): `cv2.imread(path, cv2.IMREAD_UNCHANGED)`, count
`img[240:340, 120:370] < 300`, then per series `threshold = (max - min) / 1.5` and select the
slices whose count is strictly above it. This is what Rahimzadeh et al.'s published code does
with numpy and OpenCV (the fixed 512x512 region, as in their code).

One warm-up run, then --runs timed runs over all series; prints JSON with the median:
  { "name", "runs", "slices", "msPerRun", "msPerSlice", "slicesPerSecond",
    "versions": {...}, "series": [ { "folder", "files", "darkPixels", "threshold", "selected" } ] }
Folders are relative to the path given. Run with Debian's /usr/bin/python3 (numpy, cv2).
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="series or study folders of TIFF slices")
    parser.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up run")
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
    times = []
    for _ in range(max(1, args.runs)):
        start = time.perf_counter()
        for _, _, files in series:
            select(files)
        times.append((time.perf_counter() - start) * 1000)
    ms_per_run = statistics.median(times)
    ms_per_slice = ms_per_run / slices
    json.dump(
        {
            "name": "numpy+opencv",
            "runs": len(times),
            "slices": slices,
            "msPerRun": ms_per_run,
            "msPerSlice": ms_per_slice,
            "slicesPerSecond": 1000 / ms_per_slice,
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
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
