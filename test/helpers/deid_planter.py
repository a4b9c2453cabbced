"""What deid-plant.py plants in a DICOM data set: the study's identifying names, a unique marker value
for every PS3.15 Table E.1-1 attribute (recorded in the manifest), private blocks, nested sequences,
UN elements, UIDs the table has no row for, overlays and curves, names in other character sets.
"""
import json
import os

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
#: The project's copy of PS3.15 Table E.1-1 (the data covidct's de-identifier follows).
TABLE = os.path.join(HERE, "..", "..", "core", "dicom", "confidentiality-profile.json")

STUDY = "ZZDOE_JOHN_MRN99887766"
CT_FOLDER = "ZZDOE_JOHN_MRN99887766"
TIFF_FOLDER = "ZZDOE_JOHN_TIFF"
DOSE_FOLDER = "ZZDOE_JOHN_DOSE"
#: Substrings of the identifying folder and file names: none may appear in any output path or byte.
PATH_MARKERS = ["ZZDOE", "MRN99887766", "99887766"]
#: Table attributes written with VR UN instead of their own (a reader must know the tag to see them).
AS_UN = {"(0010,1080)", "(0010,2000)", "(0010,21F0)", "(0032,4000)"}
#: Table rows that cannot be planted in a stored data set: the command group 0000 (never in a file;
#: pydicom's file writer drops it).
SKIPPED_GROUPS = ("(0000,",)


# VRs whose planted value is numbered: the counter it advances and the value for its new number.
NUMBERED = {
    "DA": ("dates", lambda n: f"{1800 + n:04d}0612"),
    "DT": ("dates", lambda n: f"{1700 + n:04d}0612083015.{920000 + n}"),
    "TM": ("dates", lambda n: f"0830{n % 60:02d}.{930000 + n}"),
    "AS": ("count", lambda n: f"{n % 1000:03d}Y"),
    "DS": ("count", lambda n: f"7{n:04d}.25"),
    "IS": ("count", lambda n: f"7{n:05d}"),
    "UI": ("count", lambda n: f"2.25.4242{n:06d}"),
}


class Planter:
    def __init__(self):
        self.count = 0
        self.dates = 0
        self.markers = []  # every planted value
        self.seen = set()
        self.high = 0

    def text(self):
        self.count += 1
        return f"ZQMK{self.count:04d}"

    def record(self, marker, vr, where, tag, keyword, action, check="text", value=None):
        if marker in self.seen:
            return marker  # the same value planted again in a later slice
        self.seen.add(marker)
        entry = {"marker": marker, "vr": vr, "where": where, "tag": tag, "keyword": keyword, "action": action,
                 "check": check}
        if value is not None:
            entry["value"] = value
        self.markers.append(entry)
        return marker

    def value(self, vr):
        """A unique planted value for a VR, and the marker string that finds it (None: check by tag)."""
        if vr in ("LO", "SH", "LT", "ST", "UT", "UC", "CS", "AE", "UR"):
            m = self.text()
            return m, m
        if vr == "PN":
            m = self.text()
            return f"{m}^DOE^JOHN", m
        if vr in NUMBERED:
            counter, make = NUMBERED[vr]
            setattr(self, counter, getattr(self, counter) + 1)
            m = make(getattr(self, counter))
            return m, m
        if vr in ("OB", "UN", "OB or OW"):
            m = self.text()
            raw = f"{m} planted".encode("ascii")
            return raw + (b"\0" if len(raw) % 2 else b""), m
        if vr == "US":
            self.count += 1
            return 60000 + self.count, None
        raise ValueError(f"no planted value for VR {vr}")


def even(raw):
    """Pad a byte value to even length, as DICOM requires."""
    return raw + (b" " if len(raw) % 2 else b"")


def load_table():
    """Rows as [ "(gggg,eeee)", name, VR, basic-profile action ] (GGGGEEEE: the private row)."""
    with open(TABLE) as f:
        rows = json.load(f)["attributes"]
    out = []
    for tag, action, vr, name in rows:
        text = "(GGGG,EEEE) WHERE GGGG IS ODD" if tag == "GGGGEEEE" else f"({tag[:4]},{tag[4:]})".upper()
        keyword = ""
        if all(c in "0123456789ABCDEFabcdef" for c in tag):
            keyword = pydicom.datadict.keyword_for_tag(int(tag, 16))
        out.append([text, keyword or "".join(c for c in name if c.isalnum()), vr, action])
    return out


def parse_tag(text):
    return int(text[1:5], 16) << 16 | int(text[6:10], 16)


def code_item(p, where, tag, keyword, action):
    """A code item whose value and meaning are markers (for table sequences removed or replaced whole)."""
    item = Dataset()
    value = p.text()
    item.CodeValue = value
    item.CodingSchemeDesignator = "99ZQ"
    item.CodeMeaning = f"{value} meaning"
    p.record(value, "SQ", where, tag, keyword, action)
    return item


def plant_table(ds, p, table, where, top):
    """Plant every table attribute into `ds` (top: the file's own data set; else a sequence item)."""
    for tag_text, keyword, vr, action in table:
        if tag_text.startswith(SKIPPED_GROUPS) or "X" in tag_text[1:5] or tag_text.startswith("(GGGG"):
            continue
        tag = parse_tag(tag_text)
        if tag >> 16 == 0x0002 or tag == 0xFFFCFFFC:
            continue  # file meta and trailing padding: planted by plant_file_level
        if not top and vr == "UI" and tag in (0x00080018, 0x0020000D, 0x0020000E, 0x00200052):
            continue  # the instance's own UIDs: real ones at the top level
        path = f"{where}/{tag_text}"
        if top and tag in (0x00080018, 0x0020000D, 0x0020000E, 0x00200052):
            # The real series' UIDs stay as they are (consistent across slices); they are markers too.
            value = str(ds[tag].value)
            p.record(value, "UI", path, tag_text, keyword, action)
            continue
        if vr == "SQ":
            if action == "X/Z/U*":
                # Kept-with-new-UIDs is allowed: only table attributes inside may be planted.
                item = Dataset()
                item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
                uid, m = p.value("UI")
                item.ReferencedSOPInstanceUID = uid
                p.record(m, "UI", f"{path}[0]/(0008,1155)", "(0008,1155)", "ReferencedSOPInstanceUID", "U")
                name, m = p.value("PN")
                item.add_new(0x0040A123, "PN", name)
                p.record(m, "PN", f"{path}[0]/(0040,A123)", "(0040,A123)", "PersonName", "D")
                ds.add_new(tag, "SQ", Sequence([item]))
            else:
                ds.add_new(tag, "SQ", Sequence([code_item(p, f"{path}[0]", tag_text, keyword, action)]))
            continue
        value, marker = p.value(vr)
        write_vr = "UN" if (top and tag_text in AS_UN) else ("OW" if vr == "OB or OW" else vr)
        if write_vr == "UN" and isinstance(value, str):
            value = even(value.encode("ascii"))
        if vr == "US":
            ds.add_new(tag, "US", value)
            p.record(str(value), "US", path, tag_text, keyword, action, check="tag", value=value)
            continue
        ds.add_new(tag, write_vr, value)
        p.record(marker, vr if write_vr != "UN" else f"{vr} as UN", path, tag_text, keyword, action)


def private_block(ds, p, where, group, with_un=False):
    """A private creator block with values (a marker creator and a marker value, optionally a private UN)."""
    creator = p.text()
    ds.add_new(group << 16 | 0x0010, "LO", f"{creator} CREATOR")
    p.record(creator, "LO", f"{where}/({group:04X},0010)", f"({group:04X},0010)", "PrivateCreator", "X")
    value = p.text()
    ds.add_new(group << 16 | 0x1001, "LO", value)
    p.record(value, "LO", f"{where}/({group:04X},1001)", f"({group:04X},1001)", "private", "X")
    if with_un:
        raw = p.text()
        ds.add_new(group << 16 | 0x1002, "UN", even(f"{raw} private UN".encode("ascii")))
        p.record(raw, "UN", f"{where}/({group:04X},1002)", f"({group:04X},1002)", "private UN", "X")


def undefined_lengths(elem):
    """Write a sequence and its items, at every depth, with undefined lengths (delimiters)."""
    elem.is_undefined_length = True
    for item in elem.value:
        item.is_undefined_length_sequence_item = True
        for child in item:
            if child.VR == "SQ":
                undefined_lengths(child)


def deep_chain(p, table_subset, where):
    """AnatomicRegionSequence > AnatomicRegionModifierSequence > EquivalentCodeSequence, three deep,
    each item a real code plus table attributes, a private block and a public attribute as UN."""
    def level_item(code, meaning, level_where):
        item = Dataset()
        item.CodeValue = code
        item.CodingSchemeDesignator = "SCT"
        item.CodeMeaning = meaning
        plant_table(item, p, table_subset, level_where, top=False)
        private_block(item, p, level_where, 0x0041, with_un=True)
        uid, m = untabled_uid(p)
        item.add_new(0x00081167, "UI", uid)  # MultiFrameSourceSOPInstanceUID: no table row
        p.record(m, "UI", f"{level_where}/(0008,1167)", "(0008,1167)", "MultiFrameSourceSOPInstanceUID", "U (no row)")
        raw = p.text()
        item.add_new(0x00101000, "UN", even(f"{raw} other id as UN".encode("ascii")))  # OtherPatientIDs as UN
        p.record(raw, "LO as UN", f"{level_where}/(0010,1000)", "(0010,1000)", "OtherPatientIDs", "X")
        return item

    base = f"{where}/(0008,2218)[0]"
    one = level_item("51185008", "Thorax", base)
    two = level_item("24028007", "Right", f"{base}/(0008,2220)[0]")
    three = level_item("7771000", "Left", f"{base}/(0008,2220)[0]/(0008,0121)[0]")
    two.add_new(0x00080121, "SQ", Sequence([three]))
    one.add_new(0x00082220, "SQ", Sequence([two]))
    return Sequence([one])


def plant_file_level(ds, p, name):
    """File meta, preamble and trailing padding."""
    ae = p.text()
    ds.file_meta.SourceApplicationEntityTitle = ae
    p.record(ae, "AE", f"{name}:meta/(0002,0016)", "(0002,0016)", "SourceApplicationEntityTitle", "X")
    uid, m = p.value("UI")
    ds.file_meta.add_new(0x00020100, "UI", uid)
    p.record(m, "UI", f"{name}:meta/(0002,0100)", "(0002,0100)", "PrivateInformationCreatorUID", "X")
    info = p.text()
    ds.file_meta.add_new(0x00020102, "OB", even(f"{info} private information".encode("ascii")))
    p.record(info, "OB", f"{name}:meta/(0002,0102)", "(0002,0102)", "PrivateInformation", "X")
    pre = p.text()
    ds.preamble = f"{pre} preamble".encode("ascii").ljust(128, b"\0")
    p.record(pre, "preamble", f"{name}:preamble", "", "preamble", "X")
    pad = p.text()
    ds.add_new(0xFFFCFFFC, "OB", f"{pad} trailing padding".encode("ascii").ljust(64, b"\0"))
    p.record(pad, "OB", f"{name}/(FFFC,FFFC)", "(FFFC,FFFC)", "DataSetTrailingPadding", "X")


#: UI attributes Table E.1-1 has no row for (PS3.6 VR UI); a de-identifier must replace them too.
UNTABLED_UIDS = (
    (0x0018991E, "TargetFrameOfReferenceUID"),
    (0x00209312, "VolumeFrameOfReferenceUID"),
    (0x00209313, "TableFrameOfReferenceUID"),
    (0x00280304, "ReferencedColorPaletteInstanceUID"),
    (0x0070031B, "ReferencedFiducialUID"),
)


def untabled_uid(p):
    """A unique UID that is not under 2.25 (so a check that every UID left is new or registered
    sees it), and its marker."""
    p.count += 1
    m = f"1.3.6.1.4.1.4242.9{p.count:06d}"
    return m, m


def untabled_uids(ds, p, where):
    """UIDs outside the table: SOPInstanceUIDOfConcatenationSource holding the slice's own original
    SOP instance UID, five other UI attributes with their own values, and a kept text attribute
    (WindowCenterWidthExplanation, LO, type 3) quoting the original study UID."""
    ds.add_new(0x00200242, "UI", ds.SOPInstanceUID)
    p.record(str(ds.SOPInstanceUID), "UI", f"{where}/(0020,0242)", "(0020,0242)",
             "SOPInstanceUIDOfConcatenationSource", "U (no row)")
    for tag, keyword in UNTABLED_UIDS:
        uid, m = untabled_uid(p)
        ds.add_new(tag, "UI", uid)
        p.record(m, "UI", f"{where}/({tag >> 16:04X},{tag & 0xFFFF:04X})", f"({tag >> 16:04X},{tag & 0xFFFF:04X})",
                 keyword, "U (no row)")
    ds.add_new(0x00281055, "LO", [str(ds.StudyInstanceUID), "WINDOW2"])  # 64 characters: LO at most
    p.record(str(ds.StudyInstanceUID), "UI", f"{where}/(0028,1055)", "(0028,1055)", "WindowCenterWidthExplanation",
             "text quoting a UID")


def overlay_and_curve(ds, p, where):
    ds.add_new(0x60000010, "US", 16)
    ds.add_new(0x60000011, "US", 16)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    bits = p.text()
    ds.add_new(0x60003000, "OW", f"{bits} overlay bits".encode("ascii").ljust(32, b"\0"))
    p.record(bits, "OW", f"{where}/(6000,3000)", "(60XX,3000)", "OverlayData", "X")
    comment = p.text()
    ds.add_new(0x60004000, "LT", comment)
    p.record(comment, "LT", f"{where}/(6000,4000)", "(60XX,4000)", "OverlayComments", "X")
    label = p.text()
    ds.add_new(0x50002500, "LO", label)
    p.record(label, "LO", f"{where}/(5000,2500)", "(50XX,XXXX)", "CurveLabel", "X")


def charset_names(ds, p, index, where):
    """Slice 0: ISO_IR 100 with Latin-1 names; slice 1: ISO_IR 192 and slice 2: ISO 2022 IR 87
    (escape sequences) with Japanese names."""
    if index == 0:
        ds.SpecificCharacterSet = "ISO_IR 100"
        names = {0x00100010: "ZQMKÆØ{n}^Jürgen^Ñuñez", 0x00080080: "ZQMKKlinik Süd {n}"}
    elif index == 1:
        ds.SpecificCharacterSet = "ISO_IR 192"
        names = {0x00100010: "ZQMK山田{n}^太郎", 0x00080080: "ZQMKクリニック{n}"}
    elif index == 2:
        # Code extensions: ASCII, then JIS X 0208 behind escape sequences.
        ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
        names = {0x00100010: "ZQMK{n}^TARO=ZQMK山田{n}^太郎", 0x00080080: "ZQMK病院{n}"}
    else:
        return
    for tag, template in names.items():
        p.count += 1
        value = template.format(n=f"{p.count:04d}")
        ds[tag].value = value
        marker = value.split("^")[0]
        p.record(marker, f"{ds[tag].VR} ({ds.SpecificCharacterSet})", f"{where}/({tag >> 16:04X},{tag & 0xFFFF:04X})",
                 f"({tag >> 16:04X},{tag & 0xFFFF:04X})", pydicom.datadict.keyword_for_tag(tag), "Z")
