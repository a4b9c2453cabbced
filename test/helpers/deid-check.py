#!/usr/bin/python3
"""Look for planted identity (the manifest of deid-plant.py) in everything under a folder.

Independent of covidct's own reader: every file is searched byte by byte for every planted marker
(in UTF-8 and Latin-1), every path for the identifying folder and file names, and every DICOM file
is walked with pydicom (file meta, elements at any depth, private blocks, UN values both as pydicom
reads them and raw), every TIFF file with tifffile (every tag of every page). A marker found is a
survivor, reported with the file and the tag path where the walk saw it (or the byte offset where
only the byte search did).

One exception, by construction not a leak: a marker made of digits (an IS, DS or AS value) found
inside a new UID of the output (a `2.25.` UID in a UI value that no UI value of the source, the
manifest's root, has) is not counted: such a UID is the de-identifier's random decimal number, and
a 6-digit marker turns up in its 39 digits now and then. The same marker anywhere else, or inside a
UID the source already had, still counts.

Usage: deid-check.py MANIFEST DIR   → prints JSON:
  { files, dicomFiles, tiffFiles, survivors: [ { file, where, marker, keyword } ],
    privateLeft: [ { file, where } ], found: [markers seen], missing: [markers not seen],
    dicom: [ { file, sopClass, identityRemoved, methodCodes, uids: { study, series, sop, … } } ] }
       deid-check.py --pixels DIR        → prints JSON { relative path: SHA-256 of its pixels }
  (DICOM: the PixelData bytes as stored; TIFF: the decoded array), to pair outputs with sources.
"""
import hashlib
import json
import os
import re
import sys

import pydicom
import tifffile
from pydicom import config as pydicom_config

# Keep UN as UN: the walk sees the raw value as written, the byte search covers the rest.
pydicom_config.replace_un_with_known_vr = False
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE if hasattr(
    pydicom_config, "IGNORE") else 0


def encodings(text):
    out = {text.encode("utf-8")}
    try:
        out.add(text.encode("latin-1"))
    except UnicodeEncodeError:
        pass
    return out


def tag_text(tag):
    return f"({tag.group:04X},{tag.element:04X})"


def value_texts(elem):
    """Every text form of an element's value (str of each value; bytes decoded both ways)."""
    value = elem.value
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        return [raw.decode("latin-1"), raw.decode("utf-8", "replace")]
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [str(v) for v in value]
    return [str(value)]


def walk(ds, where, out):
    for elem in ds:
        path = f"{where}/{tag_text(elem.tag)}"
        if elem.VR == "SQ":
            out.append((path, elem, []))
            for i, item in enumerate(elem.value or []):
                walk(item, f"{path}[{i}]", out)
            continue
        try:
            texts = value_texts(elem)
        except Exception as error:  # an undecodable value: keep its raw bytes
            texts = [repr(error)]
        out.append((path, elem, texts))


def ui_values(elem):
    """The UID values of a UI element (several for a multi-valued one)."""
    if elem is None or elem.VR != "UI" or elem.value is None:
        return []
    value = elem.value
    values = value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
    return [str(v).rstrip("\0 ") for v in values]


def source_uids(root):
    """Every UID a DICOM file under the source folder holds, at any depth and in the file meta."""
    out = set()
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            full = os.path.join(dirpath, name)
            try:
                ds = pydicom.dcmread(full, force=True)
                elements = []
                walk(ds.file_meta, "", elements)
                walk(ds, "", elements)
            except Exception:
                continue
            for _, elem, _ in elements:
                out.update(ui_values(elem))
    return out


def inside(spans, start, end):
    return any(a <= start and end <= b for a, b in spans)


def occurrences(data, values):
    """The byte spans where each value occurs in data."""
    spans = []
    for value in values:
        needle = value.encode("ascii", "replace")
        at = data.find(needle)
        while at != -1:
            spans.append((at, at + len(needle)))
            at = data.find(needle, at + 1)
    return spans


def pixel_hashes(root):
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                head = f.read(132)
            try:
                if head[128:132] == b"DICM":
                    data = b"dicom:" + pydicom.dcmread(full, force=True).PixelData
                elif head[:4] in (b"II*\0", b"MM\0*"):
                    data = b"tiff:" + tifffile.imread(full).tobytes()
                else:
                    continue
            except Exception:
                continue
            out[os.path.relpath(full, root)] = hashlib.sha256(data).hexdigest()
    print(json.dumps(out))


def main():
    if sys.argv[1] == "--pixels":
        return pixel_hashes(sys.argv[2])
    manifest_path, root = sys.argv[1], sys.argv[2]
    with open(manifest_path) as f:
        manifest = json.load(f)
    markers = manifest["markers"]
    text_markers = [m for m in markers if m["check"] == "text"]
    tag_markers = [m for m in markers if m["check"] == "tag"]
    by_text = {m["marker"]: m for m in text_markers}
    # One pattern over all encodings of all markers, longest first (a marker may contain another).
    needles = sorted({e for m in text_markers for e in encodings(m["marker"])}, key=len, reverse=True)
    needle_marker = {}
    for m in text_markers:
        for e in encodings(m["marker"]):
            needle_marker.setdefault(e, m["marker"])
    path_markers = [p.upper() for p in manifest["pathMarkers"]]
    pattern = re.compile(b"|".join(re.escape(n) for n in needles + [p.encode() for p in path_markers]))
    catch_all = re.compile(b"ZQMK")
    known_uids = source_uids(manifest["root"])

    def new_uid(text):
        return text.startswith("2.25.") and text not in known_uids

    survivors, private_left, found, dicom = [], [], set(), []
    files = dicom_files = tiff_files = 0

    def survive(file, where, marker, keyword):
        found.add(marker)
        survivors.append({"file": file, "where": where, "marker": marker, "keyword": keyword})

    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            upper = rel.upper()
            for p in path_markers:
                if p in upper:
                    survive(rel, "path", p, "file or folder name")
            for m in text_markers:
                if m["marker"].upper() in upper:
                    survive(rel, "path", m["marker"], m["keyword"])
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            files += 1
            with open(full, "rb") as f:
                data = f.read()
            explained = set()
            # New random UIDs of this file: the markers found inside them are chance (see above).
            random_uids = set()
            # The structured walk first: tag paths for what it sees.
            is_dicom = len(data) > 132 and data[128:132] == b"DICM"
            if is_dicom:
                dicom_files += 1
                try:
                    ds = pydicom.dcmread(full, force=True)
                    elements = []
                    walk(ds.file_meta, f"{rel}:meta", elements)
                    walk(ds, rel, elements)
                    preamble = ds.preamble or b""
                    dicom.append({
                        "file": rel,
                        "sopClass": str(ds.get("SOPClassUID", "")),
                        "identityRemoved": str(ds.get("PatientIdentityRemoved", "")),
                        "methodCodes": [str(i.get("CodeValue", "")) for i in
                                        ds.get("DeidentificationMethodCodeSequence", [])],
                        "uids": {k: str(v) for k, v in (
                            ("study", ds.get("StudyInstanceUID")),
                            ("series", ds.get("SeriesInstanceUID")),
                            ("sop", ds.get("SOPInstanceUID")),
                            ("mediaSop", ds.file_meta.get("MediaStorageSOPInstanceUID")),
                            ("frameOfReference", ds.get("FrameOfReferenceUID")),
                            ("referencedSop", ds.get("ReferencedSOPInstanceUID")),
                        ) if v is not None},
                    })
                    elements.append((f"{rel}:preamble", None, [preamble.decode("latin-1")]))
                except Exception as error:
                    elements = []
                    survivors.append({"file": rel, "where": "unreadable by pydicom", "marker": "",
                                      "keyword": str(error)})
                for path, elem, texts in elements:
                    if elem is not None and elem.tag.is_private:
                        private_left.append({"file": rel, "where": path})
                    fresh = {u for u in ui_values(elem) if new_uid(u)}
                    random_uids |= fresh
                    for text in texts:
                        if text.rstrip("\0 ") in fresh:
                            continue
                        for hit in pattern.finditer(text.encode("utf-8", "replace")):
                            marker = needle_marker.get(hit.group(0), hit.group(0).decode("latin-1"))
                            explained.add(marker)
                            survive(rel, path, marker, by_text[marker]["keyword"] if marker in by_text else "name")
                        for hit in pattern.finditer(text.encode("latin-1", "replace")):
                            marker = needle_marker.get(hit.group(0), hit.group(0).decode("latin-1"))
                            if marker not in explained:
                                explained.add(marker)
                                survive(rel, path, marker, by_text.get(marker, {}).get("keyword", "name"))
                    if elem is not None and elem.VR in ("US", "UN"):
                        for m in tag_markers:
                            if tag_text(elem.tag) == m["tag"] and (
                                    elem.value == m["value"] or elem.value == m["value"].to_bytes(2, "little")):
                                survive(rel, path, m["marker"], m["keyword"])
            elif data[:4] in (b"II*\0", b"MM\0*"):
                tiff_files += 1
                try:
                    with tifffile.TiffFile(full) as tif:
                        for i, page in enumerate(tif.pages):
                            for tag in page.tags.values():
                                text = tag.value if isinstance(tag.value, str) else repr(tag.value)
                                for hit in pattern.finditer(text.encode("utf-8", "replace")):
                                    marker = needle_marker.get(hit.group(0), hit.group(0).decode("latin-1"))
                                    explained.add(marker)
                                    survive(rel, f"{rel}:page{i}:{tag.name}", marker,
                                            by_text.get(marker, {}).get("keyword", "name"))
                except Exception as error:
                    survivors.append({"file": rel, "where": "unreadable by tifffile", "marker": "",
                                      "keyword": str(error)})
            # Then the bytes: anything the walk did not explain, with its offset.
            random_spans = occurrences(data, random_uids)
            for hit in pattern.finditer(data):
                marker = needle_marker.get(hit.group(0), hit.group(0).decode("latin-1"))
                if marker in explained or inside(random_spans, hit.start(), hit.end()):
                    continue
                explained.add(marker)
                survive(rel, f"byte {hit.start()}", marker, by_text.get(marker, {}).get("keyword", "name"))
            # Any other ZQMK text (a marker cut or re-encoded on the way).
            for hit in catch_all.finditer(data):
                known = pattern.match(data, hit.start())
                if known is None:
                    context = data[hit.start():hit.start() + 24].split(b"\0")[0].decode("utf-8", "replace")
                    survive(rel, f"byte {hit.start()}", context, "ZQMK prefix")

    print(json.dumps({
        "files": files,
        "dicomFiles": dicom_files,
        "tiffFiles": tiff_files,
        "survivors": survivors,
        "privateLeft": private_left,
        "found": sorted(found),
        "missing": sorted({m["marker"] for m in markers} - found),
        "dicom": dicom,
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
