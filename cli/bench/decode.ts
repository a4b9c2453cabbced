/**
 * `covidct bench decode`: full decode of one 512×512 slice (what the worker does per slice) in each
 * format covidct reads, from bytes in memory, against OpenCV (TIFF) and pydicom (DICOM) decoding the
 * same bytes in the same run, and against our own decode of the uncompressed form of that slice.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describeError } from '../../core/errors.js';
import { decodeSlice } from '../../core/read.js';
import { encodeTiff16 } from '../../core/tiff/encode.js';
import { type Compared, compared, repoRoot, round, runPythonJson, timeRuns } from './common.js';

/** One slice file to decode. */
interface DecodeCase {
  readonly name: string;
  readonly format: 'tiff' | 'dicom';
  /** What the bytes hold, e.g. `LZW`, `JPEG-LS lossless`. */
  readonly encoding: string;
  readonly bytes: Uint8Array;
  /** The case whose bytes hold the same pixels uncompressed. */
  readonly uncompressed: string;
}

/** One measured case of {@link benchDecode}. */
export interface DecodeFigure extends Compared {
  readonly name: string;
  readonly format: 'tiff' | 'dicom';
  readonly encoding: string;
  readonly width: number;
  readonly height: number;
  readonly bytes: number;
  readonly slicesPerSecond: number;
  /** Our ms for this encoding over our ms for the uncompressed form of the same slice. */
  readonly vsUncompressed: number;
}

/** What `bench decode --json` prints. */
export interface BenchDecodeResult {
  readonly runs: number;
  readonly reference: { readonly name: string; readonly versions: Record<string, string> } | null;
  readonly referenceError?: string;
  readonly cases: readonly DecodeFigure[];
}

/** Options of {@link benchDecode}. */
export interface BenchDecodeOptions {
  /** Timed decodes per case after one warm-up. @default 20 */
  readonly runs?: number;
  /** Skip the Python reference. */
  readonly reference?: boolean;
  readonly python?: string;
}

/** The bundled slices: Lung-PET-CT-Dx A0002 slice 1-05 in every encoding test/fixtures holds. */
async function cases(): Promise<DecodeCase[]> {
  const fixtures = join(repoRoot(), 'test', 'fixtures');
  const dicom = join(fixtures, 'dicom');
  const deflateTiff = new Uint8Array(
    await readFile(join(fixtures, 'lung-pet-ct-dx-A0002-tiff', 'B70f', '1-05.tif')),
  );
  const lzwTiff = new Uint8Array(
    await readFile(join(fixtures, 'lung-pet-ct-dx-A0002-tiff', 'B40f', '1-05.tif')),
  );
  const rows = await decodeSlice(deflateTiff, 'B70f/1-05.tif');
  const plainTiff = encodeTiff16(rows.pixels, rows.header.width, rows.header.height);
  const plainDicom = new Uint8Array(gunzipSync(await readFile(join(dicom, 'lung-implicit-le.dcm.gz'))));
  const file = async (name: string) => new Uint8Array(await readFile(join(dicom, name)));
  return [
    {
      name: 'tiff-none',
      format: 'tiff',
      encoding: 'uncompressed, 8-row strips',
      bytes: plainTiff,
      uncompressed: 'tiff-none',
    },
    {
      name: 'tiff-deflate',
      format: 'tiff',
      encoding: 'Deflate (B70f)',
      bytes: deflateTiff,
      uncompressed: 'tiff-none',
    },
    // B40f is another reconstruction of the same position; its uncompressed form decodes in the same time.
    { name: 'tiff-lzw', format: 'tiff', encoding: 'LZW (B40f)', bytes: lzwTiff, uncompressed: 'tiff-none' },
    {
      name: 'dicom-implicit-le',
      format: 'dicom',
      encoding: 'implicit VR little endian (uncompressed)',
      bytes: plainDicom,
      uncompressed: 'dicom-implicit-le',
    },
    {
      name: 'dicom-rle',
      format: 'dicom',
      encoding: 'RLE lossless',
      bytes: await file('lung-rle-lossless.dcm'),
      uncompressed: 'dicom-implicit-le',
    },
    {
      name: 'dicom-jpeg-lossless',
      format: 'dicom',
      encoding: 'JPEG lossless SV1 (process 14)',
      bytes: await file('lung-jpeg-lossless-sv1.dcm'),
      uncompressed: 'dicom-implicit-le',
    },
    {
      name: 'dicom-jpeg-ls',
      format: 'dicom',
      encoding: 'JPEG-LS lossless',
      bytes: await file('lung-jpegls-lossless.dcm'),
      uncompressed: 'dicom-implicit-le',
    },
    {
      name: 'dicom-jpeg2000',
      format: 'dicom',
      encoding: 'JPEG 2000 lossless',
      bytes: await file('lung-j2k-lossless.dcm'),
      uncompressed: 'dicom-implicit-le',
    },
    {
      name: 'dicom-jpeg-extended',
      format: 'dicom',
      encoding: 'JPEG extended 12-bit (lossy)',
      bytes: await file('lung-jpeg-lossy-extended.dcm'),
      uncompressed: 'dicom-implicit-le',
    },
  ];
}

interface ReferenceOutput {
  name: string;
  versions: Record<string, string>;
  results: { file: string; msPerSlice?: number; error?: string }[];
}

/** Time every case (see the module comment). */
export async function benchDecode(options: BenchDecodeOptions = {}): Promise<BenchDecodeResult> {
  const runs = options.runs ?? 20;
  const list = await cases();
  const ours = new Map<string, { ms: number; width: number; height: number }>();
  for (const c of list) {
    const rows = await decodeSlice(c.bytes, c.name);
    const { ms } = await timeRuns(runs, () => decodeSlice(c.bytes, c.name));
    ours.set(c.name, { ms, width: rows.header.width, height: rows.header.height });
  }

  let reference: ReferenceOutput | null = null;
  let referenceError: string | undefined;
  if (options.reference === false) {
    referenceError = 'reference skipped';
  } else {
    const dir = await mkdtemp(join(tmpdir(), 'covidct-bench-decode-'));
    try {
      const files = await Promise.all(
        list.map(async (c) => {
          const path = join(dir, `${c.name}.${c.format === 'tiff' ? 'tif' : 'dcm'}`);
          await writeFile(path, c.bytes);
          return path;
        }),
      );
      const script = join(repoRoot(), 'bench', 'reference_decode.py');
      reference = await runPythonJson<ReferenceOutput>(
        script,
        ['--runs', String(runs), ...files],
        options.python,
      );
    } catch (error) {
      referenceError = describeError(error);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  const figures = list.map((c, i): DecodeFigure => {
    const mine = ours.get(c.name)!;
    const ref = reference?.results[i];
    const baseline = c.format === 'tiff' ? 'OpenCV cv2.imdecode' : 'pydicom pixel_array + modality LUT';
    const error = ref === undefined ? (referenceError ?? 'no reference') : ref.error;
    return {
      name: c.name,
      format: c.format,
      encoding: c.encoding,
      width: mine.width,
      height: mine.height,
      bytes: c.bytes.length,
      slicesPerSecond: round(1000 / mine.ms),
      vsUncompressed: round(mine.ms / ours.get(c.uncompressed)!.ms),
      ...roundCompared(
        compared(
          mine.ms,
          baseline,
          ref?.msPerSlice ?? null,
          ref?.msPerSlice === undefined ? error : undefined,
        ),
      ),
    };
  });
  return {
    runs,
    reference: reference === null ? null : { name: reference.name, versions: reference.versions },
    ...(referenceError === undefined ? {} : { referenceError }),
    cases: figures,
  };
}

function roundCompared(c: Compared): Compared {
  return {
    ...c,
    ms: round(c.ms),
    baselineMs: c.baselineMs === null ? null : round(c.baselineMs),
    speedup: c.speedup === null ? null : round(c.speedup),
  };
}

/** Plain-text table of a {@link BenchDecodeResult}. */
export function formatDecode(r: BenchDecodeResult): string {
  const rows = [['case', 'bytes', 'ms', 'baseline ms', 'speedup', '× uncompressed']];
  for (const c of r.cases) {
    rows.push([
      c.name,
      String(c.bytes),
      c.ms.toFixed(3),
      c.baselineMs === null ? '—' : c.baselineMs.toFixed(3),
      c.speedup === null ? '—' : c.speedup.toFixed(2),
      c.vsUncompressed.toFixed(2),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows
    .map((row) =>
      row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '),
    )
    .join('\n');
}
