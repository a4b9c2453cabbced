#!/usr/bin/python3
"""Compare covidct's de-identified file with Orthanc's, element by element, against the source.

For every element of the source (file meta and data set, at any depth; sequences by item index)
that has a value: what Orthanc did to it (kept, replaced, emptied, removed) and what covidct did.
A failure is an element that Orthanc removed, emptied or replaced while covidct kept the source's
own value. Orthanc keeping what covidct removes is Orthanc's business (its 2021b list is shorter
than the 2024e table covidct follows) and is only counted.

Usage: deid-compare.py PAIRS.json   (PAIRS: [ { source, covidct, orthanc } ], paths of files)
Prints JSON: { compared, failures: [ { file, path, keyword, value, orthanc } ], orthancKeeps }
"""
import json
import sys

import pydicom
from pydicom import config as pydicom_config
from pydicom.datadict import keyword_for_tag

pydicom_config.replace_un_with_known_vr = True
PIXEL_DATA = 0x7FE00010
#: File meta elements each writer fills with its own figures (group length, implementation): not identity.
WRITER_OWN = {"meta/(0002,0000)", "meta/(0002,0001)", "meta/(0002,0012)", "meta/(0002,0013)"}


def leaves(ds, where, out):
    for elem in ds:
        path = f"{where}/({elem.tag.group:04X},{elem.tag.element:04X})"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or []):
                leaves(item, f"{path}[{i}]", out)
            if not elem.value:
                out[path] = (elem.tag, "")
            continue
        if elem.tag == PIXEL_DATA:
            continue
        try:
            value = elem.value
            text = value.hex() if isinstance(value, (bytes, bytearray)) else str(value)
        except Exception as error:
            text = f"<undecodable {error}>"
        out[path] = (elem.tag, "" if text in ("", "None") else text.rstrip("\0 ").rstrip())
    return out


def read(path):
    ds = pydicom.dcmread(path, force=True)
    out = {}
    leaves(ds.file_meta, "meta", out)
    leaves(ds, "", out)
    return out


def main():
    with open(sys.argv[1]) as f:
        pairs = json.load(f)
    failures, compared, orthanc_keeps = [], 0, 0
    for pair in pairs:
        source, covidct, orthanc = read(pair["source"]), read(pair["covidct"]), read(pair["orthanc"])
        for path, (tag, value) in source.items():
            if value == "" or path in WRITER_OWN:
                continue
            compared += 1
            ours = covidct.get(path, (tag, None))[1]
            theirs = orthanc.get(path, (tag, None))[1]
            if ours == value and theirs != value:
                failures.append({
                    "file": pair["name"],
                    "path": path,
                    "keyword": keyword_for_tag(tag) or ("private" if tag.is_private else ""),
                    "value": value[:80],
                    "orthanc": "removed" if theirs is None else "emptied" if theirs == "" else "replaced",
                })
            elif theirs == value and ours != value:
                orthanc_keeps += 1
    print(json.dumps({"compared": compared, "failures": failures, "orthancKeeps": orthanc_keeps},
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
