"""Read covidct's result objects back with pydicom, for test/result-objects.test.ts.

Usage: result-objects-read.py FILE...  -> JSON {FILE: {...}} on stdout.

For each file: SOP/series/study UIDs, flags, the identity attributes as raw value bytes (hex,
as stored: byte-exact checks), PatientName as pydicom decodes it, the content tree flattened
(one entry per item: depth, relationship, value type, concept code, value), predecessor and source
references, and for images the pixel array (hex) with its shape.
"""

import json
import sys

import pydicom

IDENTITY = {
    "StudyDate": 0x00080020,
    "StudyTime": 0x00080030,
    "AccessionNumber": 0x00080050,
    "ReferringPhysicianName": 0x00080090,
    "PatientName": 0x00100010,
    "PatientID": 0x00100020,
    "IssuerOfPatientID": 0x00100021,
    "PatientBirthDate": 0x00100030,
    "PatientSex": 0x00100040,
    "StudyID": 0x00200010,
}


def code(seq):
    if not seq:
        return None
    c = seq[0]
    return [c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning]


def flatten(items, depth, out):
    for item in items:
        entry = {
            "depth": depth,
            "rel": item.get("RelationshipType"),
            "type": item.ValueType,
            "concept": code(item.get("ConceptNameCodeSequence")),
        }
        if item.ValueType == "TEXT":
            entry["text"] = str(item.TextValue)
        elif item.ValueType == "CODE":
            entry["code"] = code(item.ConceptCodeSequence)
        elif item.ValueType == "UIDREF":
            entry["uid"] = str(item.UID)
        elif item.ValueType == "NUM":
            mv = item.MeasuredValueSequence[0]
            entry["num"] = float(mv.NumericValue)
            entry["unit"] = code(mv.MeasurementUnitsCodeSequence)
        out.append(entry)
        if "ContentSequence" in item:
            flatten(item.ContentSequence, depth + 1, out)


def hierarchical(seq):
    refs = []
    for study in seq:
        for series in study.ReferencedSeriesSequence:
            for sop in series.ReferencedSOPSequence:
                refs.append(
                    {
                        "study": study.StudyInstanceUID,
                        "series": series.SeriesInstanceUID,
                        "sopClass": sop.ReferencedSOPClassUID,
                        "sop": sop.ReferencedSOPInstanceUID,
                    }
                )
    return refs


def read(path):
    ds = pydicom.dcmread(path)
    raw = {}
    for name, tag in IDENTITY.items():
        if tag in ds:
            # The bytes as stored: get_item returns the undecoded element.
            value = ds.get_item(tag).value
            raw[name] = value.hex() if isinstance(value, bytes) else None
    out = {
        "sopClass": ds.SOPClassUID,
        "sop": ds.SOPInstanceUID,
        "series": ds.SeriesInstanceUID,
        "study": ds.StudyInstanceUID,
        "mediaSop": ds.file_meta.MediaStorageSOPInstanceUID,
        "modality": ds.Modality,
        "seriesDescription": ds.get("SeriesDescription"),
        "raw": raw,
        # pydicom decodes SpecificCharacterSet as it reads (it needs it to decode text): its values.
        "charset": "\\".join(ds.SpecificCharacterSet)
        if isinstance(ds.get("SpecificCharacterSet"), pydicom.multival.MultiValue)
        else ds.get("SpecificCharacterSet"),
        "patientName": str(ds.PatientName),
        "referringPhysicianName": str(ds.ReferringPhysicianName),
    }
    if "ContentSequence" in ds:
        out["verification"] = ds.VerificationFlag
        out["completion"] = ds.CompletionFlag
        out["rootConcept"] = code(ds.ConceptNameCodeSequence)
        out["template"] = ds.ContentTemplateSequence[0].TemplateIdentifier
        tree = []
        flatten(ds.ContentSequence, 1, tree)
        out["tree"] = tree
        out["predecessors"] = hierarchical(ds.get("PredecessorDocumentsSequence", []))
        out["evidence"] = hierarchical(ds.get("CurrentRequestedProcedureEvidenceSequence", []))
    if "PixelData" in ds:
        arr = ds.pixel_array
        out["burnedIn"] = ds.BurnedInAnnotation
        out["photometric"] = ds.PhotometricInterpretation
        out["shape"] = list(arr.shape)
        out["pixels"] = arr.tobytes().hex()
        out["sources"] = [
            {"sopClass": s.ReferencedSOPClassUID, "sop": s.ReferencedSOPInstanceUID}
            for s in ds.SourceImageSequence
        ]
    return out


print(json.dumps({path: read(path) for path in sys.argv[1:]}))
