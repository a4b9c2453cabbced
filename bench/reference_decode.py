#!/usr/bin/python3
"""Reference timing for `covidct bench decode`: full decode of one slice file held in memory.

TIFF: `cv2.imdecode(bytes, cv2.IMREAD_UNCHANGED)` (OpenCV's libtiff: what the authors' code reads
with). DICOM: `pydicom.dcmread(BytesIO(bytes)).pixel_array` with the rescale applied
(`apply_modality_lut`), which decodes what pydicom's own handlers can (uncompressed, RLE, deflated;
JPEG variants need pylibjpeg or GDCM, which Debian's python3-pydicom does not pull in: those files
report an error instead of a time).

Usage: reference_decode.py --runs N FILE...   (files uncompressed on disk, not gzipped)
One warm-up decode per file, then N timed decodes; prints JSON:
  { "name", "versions": {...}, "results": [ { "file", "msPerSlice" } | { "file", "error" } ] }
"""
import argparse
import io
import json
import statistics
import sys
import time

import cv2
import numpy as np


def decode_tiff(data):
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("OpenCV could not decode it")
    return img


def decode_dicom(data):
    import pydicom
    from pydicom.pixel_data_handlers.util import apply_modality_lut

    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    return apply_modality_lut(ds.pixel_array, ds)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    results = []
    for path in args.files:
        with open(path, "rb") as f:
            data = f.read()
        is_tiff = data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
        decode = decode_tiff if is_tiff else decode_dicom
        try:
            decode(data)
            times = []
            for _ in range(args.runs):
                t = time.perf_counter()
                decode(data)
                times.append((time.perf_counter() - t) * 1000)
            results.append({"file": path, "msPerSlice": statistics.median(times)})
        except Exception as error:  # a codec pydicom lacks: reported, not fatal
            results.append({"file": path, "error": str(error).splitlines()[0][:200] if str(error) else type(error).__name__})
    versions = {"python": sys.version.split()[0], "numpy": np.__version__, "opencv": cv2.__version__}
    try:
        import pydicom

        versions["pydicom"] = pydicom.__version__
    except ImportError:
        pass
    json.dump({"name": "opencv+pydicom", "versions": versions, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
