"""Make two studies with non-ASCII patient names from a real series, for test/gateway-orthanc.test.ts.

Usage: orthanc-charsets.py make SRC_DIR OUT_DIR N_SECOND
  SRC_DIR holds a series (*.dcm, gunzipped). Writes
  OUT_DIR/utf8/*.dcm    every slice, its own UIDs, SpecificCharacterSet ISO_IR 192 and a UTF-8 name;
  OUT_DIR/jis/*.dcm     the first N_SECOND slices as another study and patient (new Study, Series
                        and SOP Instance UIDs), SpecificCharacterSet \\ISO 2022 IR 87 and a Japanese
                        name encoded with ISO 2022 escape sequences (PS3.5 H.3.1).
Pixel data and every other attribute are kept. Prints JSON: per study the identity as written
(raw value bytes in hex) and the UIDs, so the test can look for them byte-exact.

Usage: orthanc-charsets.py read FILE...
  Prints JSON {FILE: {...}}: the identity as above, the SOP class and UIDs, VerificationFlag,
  BurnedInAnnotation, and the references (SourceImageSequence, PredecessorDocumentsSequence).
"""

import json
import os
import sys

import pydicom
from pydicom.uid import generate_uid

UTF8_NAME = "Müller-Ñúñez^Zoë Ἀλέξανδρος"
JIS_NAME = "Yamada^Tarou=山田^太郎=やまだ^たろう"


def raw(ds, tag):
    """The value bytes as stored: get_item gives the undecoded element of a data set just read."""
    elem = ds.get_item(tag)
    return elem.value.hex() if elem is not None and isinstance(elem.value, bytes) else None


def charset(ds):
    """SpecificCharacterSet as its values joined by backslashes (pydicom decodes it as it reads)."""
    value = ds.get("SpecificCharacterSet")
    return "\\".join(value) if isinstance(value, pydicom.multival.MultiValue) else value


def identity(path):
    ds = pydicom.dcmread(path)
    return {
        "PatientName": raw(ds, 0x00100010),
        "PatientID": raw(ds, 0x00100020),
        "SpecificCharacterSet": charset(ds),
        "decodedName": str(ds.PatientName),
        "StudyInstanceUID": str(ds.StudyInstanceUID),
    }


def refs(seq):
    """Hierarchical SOP references (study → series → SOP) as flat rows."""
    out = []
    for study in seq:
        for series in study.ReferencedSeriesSequence:
            for sop in series.ReferencedSOPSequence:
                out.append({"study": study.StudyInstanceUID, "sop": sop.ReferencedSOPInstanceUID})
    return out


def read(path):
    ds = pydicom.dcmread(path)
    out = identity(path)
    out.update(
        {
            "sopClass": str(ds.SOPClassUID),
            "sop": str(ds.SOPInstanceUID),
            "series": str(ds.SeriesInstanceUID),
            "modality": ds.get("Modality"),
            "verification": ds.get("VerificationFlag"),
            "burnedIn": ds.get("BurnedInAnnotation"),
            "sources": [
                {"sopClass": str(s.ReferencedSOPClassUID), "sop": str(s.ReferencedSOPInstanceUID)}
                for s in ds.get("SourceImageSequence", [])
            ],
            "predecessors": refs(ds.get("PredecessorDocumentsSequence", [])),
        }
    )
    return out


def make(src, out, n_second):
    files = sorted(f for f in os.listdir(src) if f.endswith(".dcm"))
    report = {}

    os.makedirs(os.path.join(out, "utf8"), exist_ok=True)
    uids = {"series": set(), "sop": []}
    for f in files:
        ds = pydicom.dcmread(os.path.join(src, f))
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = UTF8_NAME
        ds.PatientID = "ÜTF8-Ω-0001"
        uids["series"].add(str(ds.SeriesInstanceUID))
        uids["sop"].append(str(ds.SOPInstanceUID))
        ds.save_as(os.path.join(out, "utf8", f), write_like_original=True)
    report["utf8"] = {
        **identity(os.path.join(out, "utf8", files[0])),
        "SeriesInstanceUIDs": sorted(uids["series"]),
        "SOPInstanceUIDs": uids["sop"],
        "name": UTF8_NAME,
    }

    os.makedirs(os.path.join(out, "jis"), exist_ok=True)
    study, series = generate_uid(), generate_uid()
    sops = []
    for f in files[:n_second]:
        ds = pydicom.dcmread(os.path.join(src, f))
        ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
        ds.PatientName = JIS_NAME
        ds.PatientID = "JIS-0002"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        sop = generate_uid()
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        # Frame of reference belongs to the first study's acquisition.
        if "FrameOfReferenceUID" in ds:
            ds.FrameOfReferenceUID = generate_uid()
        sops.append(sop)
        ds.save_as(os.path.join(out, "jis", f), write_like_original=True)
    report["jis"] = {
        **identity(os.path.join(out, "jis", files[0])),
        "SeriesInstanceUIDs": [series],
        "SOPInstanceUIDs": sops,
        "name": JIS_NAME,
    }
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        json.dump({path: read(path) for path in sys.argv[2:]}, sys.stdout)
