#!/usr/bin/python3
"""Write a study with planted patient identity, for checking a de-identifier from the outside.

Takes slices of a real CT series (gzip-compressed DICOM, as in samples/lung-pet-ct-dx-A0002)
and writes, under OUT/ZZDOE_JOHN_MRN99887766/ (the study root to give to the tool under test):

  ZZDOE_JOHN_MRN99887766/ZZDOE_JOHN_MRN99887766_CT_0001.dcm …  the CT slices, every attribute of
      PS3.15 Table E.1-1 (core/dicom/confidentiality-profile.json) planted with a unique marker
      value at the top level; table attributes again inside a three-deep chain of sequences that
      the profile keeps (AnatomicRegion > AnatomicRegionModifier > EquivalentCode); private blocks
      with values at the top level and in every level of that chain; public identity attributes
      written with VR UN, and a private UN; the first slice in ISO_IR 100 with Latin-1 names, the
      second in ISO_IR 192 with Japanese names; file meta SourceApplicationEntityTitle and private
      information; a marker in the 128-byte preamble; data set trailing padding with a marker;
      UI attributes the table has no row for (SOPInstanceUIDOfConcatenationSource = the slice's own
      SOP instance UID, TargetFrameOfReferenceUID, Volume/TableFrameOfReferenceUID,
      ReferencedColorPaletteInstanceUID, ReferencedFiducialUID, MultiFrameSourceSOPInstanceUID in
      each level of the chain) and a kept text (WindowCenterWidthExplanation) quoting the study UID;
      slice 4 in implicit VR little endian, slice 5 deflated, slice 6 explicit VR big endian.
  ZZDOE_JOHN_TIFF/ZZDOE_JOHN_MRN99887766_T_0001.tif …  TIFF slices (raw = HU + 1024) carrying
      ImageDescription, Artist, DateTime, DocumentName, HostComputer, Software, PageName markers.
  ZZDOE_JOHN_DOSE/…  instances that are not CT images: an X-Ray Radiation Dose SR, an encapsulated
      PDF, and a secondary-capture dose screen whose Modality says CT, each with its own markers.

With --burned-in, one CT slice also says BurnedInAnnotation=YES (the tool must refuse the study).

The manifest (--manifest FILE, JSON) lists every planted value: the marker text, where it was
planted (file, tag path), the attribute, its VR and its Table E.1-1 action; binary-valued plants
(US) are checked by tag, not by text. Markers are built so that no pixel value of a 12-bit image
can spell them (every marker holds two ASCII letters or digits in a row, ≥ 0x3030 as a 16-bit word).

Usage: deid-plant.py SERIES_DIR OUT_DIR --manifest FILE [--slices 1-02,1-03,…] [--burned-in]
Needs Debian's python3-pydicom, python3-numpy and python3-tifffile.
"""
import argparse
import datetime
import gzip
import io
import json
import os
import sys

import numpy as np
import pydicom
import tifffile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian)

# The planting of one data set: a module of its own beside this script (where Python looks first);
# no __pycache__ left in the source tree.
sys.dont_write_bytecode = True
from deid_planter import (CT_FOLDER, DOSE_FOLDER, PATH_MARKERS, SKIPPED_GROUPS, STUDY, TIFF_FOLDER, Planter,
                          charset_names, deep_chain, load_table, overlay_and_curve, plant_file_level,
                          plant_table, private_block, undefined_lengths, untabled_uids)


def ct_slices(args, p, table, ct_dir):
    names = args.slices.split(",")
    written = []
    deep_subset = [r for r in table if r[1] in (
        "PersonName", "InstitutionName", "ContentDate", "ReferencedSOPInstanceUID", "PatientBirthDate",
        "StudyComments", "VerifyingObserverName", "MedicalAlerts", "PatientAddress")]
    for i, name in enumerate(names):
        src = os.path.join(args.series, f"{name}.dcm.gz")
        with gzip.open(src) as f:
            ds = pydicom.dcmread(io.BytesIO(f.read()))
        out_name = f"{CT_FOLDER}_CT_{i + 1:04d}.dcm"
        where = f"{os.path.join(CT_FOLDER, out_name)}"
        # Every slice gets the same planted values (counters restart), except what a slice holds
        # of its own (its real SOP instance UID, the character-set names).
        p.count, p.dates = 0, 0
        mark = p
        plant_table(ds, mark, table, where, top=True)
        private_block(ds, mark, where, 0x0033)
        private_block(ds, mark, where, 0x0035, with_un=True)
        # A private block inside a table-free sequence item, and the three-deep chain.
        ds.add_new(0x00082218, "SQ", deep_chain(mark, deep_subset, where))
        undefined_lengths(ds[0x00082218])
        overlay_and_curve(ds, mark, where)
        untabled_uids(ds, mark, where)
        plant_file_level(ds, mark, where)
        charset_names(ds, p, i, where)
        if args.burned_in and i == len(names) // 2:
            ds.BurnedInAnnotation = "YES"
        if i == 3:
            # One slice in implicit VR little endian: no VR in the stream, the reader must know each tag.
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
            ds.is_implicit_VR = True
        elif i == 4:
            # One deflated slice: a reader must inflate the data set to see any value.
            ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        elif i == 5:
            # One explicit VR big endian slice (pixels written big endian too).
            pixels = ds.pixel_array
            ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
            ds.is_little_endian = False
            ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(">")).tobytes()
        ds.save_as(os.path.join(ct_dir, out_name), write_like_original=False)
        written.append(out_name)
        p.high = max(p.high, p.count)
    p.count = p.high
    return written


def raw_domain(path):
    with gzip.open(path) as f:
        ds = pydicom.dcmread(io.BytesIO(f.read()))
    stored = ds.pixel_array.astype(np.float64)
    return np.clip(np.round(stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept) + 1024), 0,
                   65535).astype(np.uint16)


def tiff_slices(args, p, tiff_dir):
    names = args.slices.split(",")[:3]
    for i, name in enumerate(names):
        raw = raw_domain(os.path.join(args.series, f"{name}.dcm.gz"))
        out = os.path.join(tiff_dir, f"{CT_FOLDER}_T_{i + 1:04d}.tif")
        where = os.path.join(TIFF_FOLDER, os.path.basename(out))
        tags = {}
        for code, tag_name in ((270, "ImageDescription"), (315, "Artist"), (269, "DocumentName"),
                               (316, "HostComputer"), (305, "Software"), (285, "PageName"), (271, "Make"),
                               (272, "Model"), (33432, "Copyright"), (700, "XMP"), (65000, "private")):
            m = p.text()
            tags[code] = f"{m} {tag_name}"
            p.record(m, "TIFF ASCII", f"{where}:{tag_name}", str(code), tag_name, "remove")
        p.dates += 1
        stamp = f"{1700 + p.dates:04d}:06:12 08:30:15"
        p.record(stamp, "TIFF ASCII", f"{where}:DateTime", "306", "DateTime", "remove")
        tifffile.imwrite(out, raw, photometric="minisblack", description=tags[270], software=tags[305],
                         datetime=stamp, metadata=None,
                         extratags=[(code, "s", 0, tags[code], True)
                                    for code in (315, 269, 316, 285, 271, 272, 33432, 65000)]
                         + [(700, "B", len(tags[700]), tags[700].encode("ascii"), True)])


def base_instance(p, sop_class, modality, where, study_uid, identity):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    uid, m = p.value("UI")
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid
    p.record(m, "UI", f"{where}/(0008,0018)", "(0008,0018)", "SOPInstanceUID", "U")
    ds.StudyInstanceUID = study_uid
    series, m = p.value("UI")
    ds.SeriesInstanceUID = series
    p.record(m, "UI", f"{where}/(0020,000E)", "(0020,000E)", "SeriesInstanceUID", "U")
    ds.Modality = modality
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.StudyDate = identity
    ds.InstanceNumber = 1
    ds.SeriesNumber = 99
    return ds


def non_ct(p, dose_dir, study_uid, identity):
    # X-Ray Radiation Dose SR, its text naming the patient.
    where = os.path.join(DOSE_FOLDER, "ZZDOE_JOHN_dose_sr.dcm")
    sr = base_instance(p, "1.2.840.10008.5.1.4.1.1.88.67", "SR", where, study_uid, identity)
    text = Dataset()
    text.RelationshipType = "CONTAINS"
    text.ValueType = "TEXT"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "121106", "DCM", "Comment"
    text.ConceptNameCodeSequence = Sequence([concept])
    m = p.text()
    text.TextValue = f"{m} dose report for DOE^JOHN"
    p.record(m, "UT", f"{where}/(0040,A730)[0]/(0040,A160)", "(0040,A160)", "TextValue", "skip file")
    sr.ValueType = "CONTAINER"
    sr.ContinuityOfContent = "SEPARATE"
    sr.ContentSequence = Sequence([text])
    sr.save_as(os.path.join(dose_dir, "ZZDOE_JOHN_dose_sr.dcm"), write_like_original=False)
    # Encapsulated PDF.
    where = os.path.join(DOSE_FOLDER, "ZZDOE_JOHN_report.dcm")
    pdf = base_instance(p, "1.2.840.10008.5.1.4.1.1.104.1", "DOC", where, study_uid, identity)
    m = p.text()
    body = (f"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\n% {m} Patient DOE JOHN MRN99887766\ntrailer<<>>\n%%EOF\n"
            ).encode("ascii")
    pdf.EncapsulatedDocument = body + (b"\0" if len(body) % 2 else b"")
    pdf.MIMETypeOfEncapsulatedDocument = "application/pdf"
    pdf.BurnedInAnnotation = "YES"
    p.record(m, "OB", f"{where}/(0042,0011)", "(0042,0011)", "EncapsulatedDocument", "skip file")
    pdf.save_as(os.path.join(dose_dir, "ZZDOE_JOHN_report.dcm"), write_like_original=False)
    # Secondary-capture dose screen: Modality CT, the patient's name in the pixels.
    where = os.path.join(DOSE_FOLDER, "ZZDOE_JOHN_dose_screen.dcm")
    sc = base_instance(p, "1.2.840.10008.5.1.4.1.1.7", "CT", where, study_uid, identity)
    m = p.text()
    pixels = np.zeros((64, 64), dtype=np.uint8)
    text_bytes = np.frombuffer(f"{m} DOSE SCREEN DOE^JOHN".encode("ascii"), dtype=np.uint8)
    pixels[10, : len(text_bytes)] = text_bytes
    sc.ImageType = ["DERIVED", "SECONDARY", "SCREEN SAVE"]
    sc.ConversionType = "WSD"
    sc.BurnedInAnnotation = "YES"
    sc.SamplesPerPixel, sc.PhotometricInterpretation = 1, "MONOCHROME2"
    sc.Rows = sc.Columns = 64
    sc.BitsAllocated, sc.BitsStored, sc.HighBit, sc.PixelRepresentation = 8, 8, 7, 0
    sc.PixelData = pixels.tobytes()
    p.record(m, "OB", f"{where}/(7FE0,0010)", "(7FE0,0010)", "PixelData", "skip file")
    sc.save_as(os.path.join(dose_dir, "ZZDOE_JOHN_dose_screen.dcm"), write_like_original=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("series")
    parser.add_argument("out")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--slices", default="1-02,1-03,1-04,1-05,1-06,1-07")
    parser.add_argument("--burned-in", action="store_true")
    args = parser.parse_args()
    table = load_table()
    root = os.path.join(args.out, STUDY)
    ct_dir, tiff_dir, dose_dir = (os.path.join(root, d) for d in (CT_FOLDER, TIFF_FOLDER, DOSE_FOLDER))
    for d in (ct_dir, tiff_dir, dose_dir):
        os.makedirs(d, exist_ok=True)
    p = Planter()
    ct = ct_slices(args, p, table, ct_dir)
    first_ct = pydicom.dcmread(os.path.join(ct_dir, ct[0]))
    identity = (str(first_ct.PatientName), first_ct.PatientID, first_ct.PatientBirthDate, first_ct.StudyDate)
    tiff_slices(args, p, tiff_dir)
    non_ct(p, dose_dir, first_ct.StudyInstanceUID, identity)
    planted_tags = sum(1 for r in table if not (r[0].startswith(SKIPPED_GROUPS) or r[0].startswith("(GGGG")))
    manifest = {
        "root": root,
        "ctFiles": [os.path.join(CT_FOLDER, n) for n in ct],
        "burnedIn": args.burned_in,
        "pathMarkers": PATH_MARKERS,
        "tableRows": len(table),
        "tableRowsPlanted": planted_tags,
        "notPlanted": [r[0] for r in table if r[0].startswith(SKIPPED_GROUPS)]
        + ["(GGGG,EEEE) private attributes: planted as private blocks, not as a row"],
        "markers": p.markers,
    }
    with open(args.manifest, "w") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
    print(json.dumps({"root": root, "markers": len(p.markers), "ct": len(ct)}))


if __name__ == "__main__":
    sys.exit(main())
