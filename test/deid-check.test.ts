/**
 * The planted-identity checker itself (test/helpers/deid-check.py), on tiny DICOM files made here:
 * a digit-only marker that turns up by chance inside a new random `2.25.` UID of the output is not
 * a survivor (this made test/deidentify-planted.test.ts fail now and then), while the same marker
 * in any other value, or inside a UID the source already had, still is.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkFolder } from './helpers/planted.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-deid-check-');
/** A planted IS value (GPSDifferential's in the planted study). */
const MARKER = '700141';
/** A UID of the source that holds the marker. */
const SOURCE_UID = `2.25.31${MARKER}99`;
/** A new UID of the output (not in the source) that holds the marker by chance. */
const NEW_UID = `2.25.2984${MARKER}0235519`;

/** One CT-like DICOM file per entry: { file: { keyword: value } }. */
function writeDicom(dir: string, files: Record<string, Record<string, string>>): void {
  mkdirSync(dir, { recursive: true });
  const script = `
import json, sys
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
for name, values in json.loads(sys.argv[2]).items():
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = "2.25.1"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = "2.25.1"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(sys.argv[1] + "/" + name, write_like_original=False)
`;
  const run = spawnSync('/usr/bin/python3', ['-W', 'ignore', '-c', script, dir, JSON.stringify(files)], {
    encoding: 'utf8',
  });
  if (run.status !== 0) throw new Error(`writing DICOM failed: ${run.stderr}`);
}

const source = join(work, 'source');
const plant = join(work, 'plant');

beforeAll(() => {
  writeDicom(source, { 'a.dcm': { StudyInstanceUID: SOURCE_UID, StudyDescription: `chest ${MARKER}` } });
  mkdirSync(plant);
  writeFileSync(
    join(plant, 'manifest.json'),
    JSON.stringify({
      root: source,
      pathMarkers: [],
      markers: [{ marker: MARKER, keyword: 'GPSDifferential', check: 'text' }],
    }),
  );
});

const survivors = (out: string) => checkFolder(plant, out).survivors.map((s) => `${s.marker} ${s.where}`);

describe('deid-check.py', () => {
  it('does not count a digit marker inside a new 2.25 UID of the output', () => {
    const out = join(work, 'new-uid');
    writeDicom(out, { 'a.dcm': { StudyInstanceUID: NEW_UID, ReferencedSOPInstanceUID: NEW_UID } });
    expect(survivors(out)).toEqual([]);
  });

  it('counts the marker copied into a value that is not a UID, beside a new UID holding it', () => {
    const out = join(work, 'leak');
    writeDicom(out, { 'a.dcm': { StudyInstanceUID: NEW_UID, StudyDescription: MARKER } });
    expect(survivors(out)).toEqual([`${MARKER} a.dcm/(0008,1030)`]);
  });

  it('counts the marker inside a UID the source already had (copied, not new)', () => {
    const out = join(work, 'kept-uid');
    writeDicom(out, { 'a.dcm': { StudyInstanceUID: SOURCE_UID } });
    expect(survivors(out)).toEqual([`${MARKER} a.dcm/(0020,000D)`]);
  });
});
