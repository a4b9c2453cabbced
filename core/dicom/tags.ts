/**
 * DICOM tag numbers as one 32-bit value (`group << 16 | element`), and the ones covidct's byte-level
 * readers and writers share (the de-identifier, the implicit VR writer, the gateway's result reader):
 * written once here instead of in each.
 */

/** The tag `(group,element)` as one unsigned 32-bit number. */
export const tag = (group: number, element: number): number => ((group << 16) | element) >>> 0;

/** A length field's "undefined length" (sequences and items closed by a delimiter). */
export const UNDEFINED_LENGTH = 0xffffffff;
/** Item (FFFE,E000). */
export const ITEM = tag(0xfffe, 0xe000);
/** Item Delimitation Item (FFFE,E00D). */
export const ITEM_END = tag(0xfffe, 0xe00d);
/** Sequence Delimitation Item (FFFE,E0DD). */
export const SEQUENCE_END = tag(0xfffe, 0xe0dd);
/** Pixel Data (7FE0,0010). */
export const PIXEL_DATA = tag(0x7fe0, 0x0010);
/** SOP Class UID (0008,0016). */
export const SOP_CLASS_UID = tag(0x0008, 0x0016);
/** SOP Instance UID (0008,0018). */
export const SOP_INSTANCE_UID = tag(0x0008, 0x0018);
/** Specific Character Set (0008,0005). */
export const SPECIFIC_CHARACTER_SET = tag(0x0008, 0x0005);
/** Study Instance UID (0020,000D). */
export const STUDY_INSTANCE_UID = tag(0x0020, 0x000d);
/** Series Instance UID (0020,000E). */
export const SERIES_INSTANCE_UID = tag(0x0020, 0x000e);
/** Instance Number (0020,0013). */
export const INSTANCE_NUMBER = tag(0x0020, 0x0013);
