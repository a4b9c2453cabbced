/**
 * Bad input through the command line: a non-zero exit and one line naming the file, never a
 * stack trace; a series with an unreadable slice fails as a whole while the others go on.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { encodeTiff16 } from '../core/tiff/encode.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';

const realB70f = fileURLToPath(new URL('fixtures/lung-pet-ct-dx-A0002-tiff/B70f', import.meta.url));
const root = tempDir();

function goodTiff(): Uint8Array {
  return encodeTiff16(new Uint16Array(512 * 512).fill(1024), 512, 512);
}

/** A folder holding one file with the given bytes. */
function folderWith(name: string, bytes: Uint8Array | string): { dir: string; file: string } {
  const dir = join(root, `case-${name}`);
  mkdirSync(dir);
  const file = join(dir, name);
  writeFileSync(file, bytes);
  return { dir, file };
}

/** Pseudo-random bytes from a fixed seed. */
function noise(n: number, seed = 7): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function expectOneLineError(args: string[], file: string, pattern: RegExp) {
  const run = runCli(args);
  expect(run.code).not.toBe(0);
  const lines = run.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain(file);
  expect(lines[0]).toMatch(pattern);
  expect(run.stderr).not.toMatch(/\n\s+at /);
}

describe('the covidct command', () => {
  it('runs as `npx covidct` from the repository (the built entry point is executable) and says its version', () => {
    const run = spawnSync('npx', ['--no-install', 'covidct', '--version'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(run.stderr).not.toMatch(/Permission denied/);
    expect(run.status).toBe(0);
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    expect(run.stdout.trim()).toBe(pkg.version);
  });
});

describe('covidct select on bad input', () => {
  it('names a truncated TIFF', () => {
    const { dir, file } = folderWith('truncated.tif', goodTiff().subarray(0, 300_000));
    expectOneLineError(['select', dir], file, /truncated|outside the file|damaged/i);
  });

  it('names random bytes called .dcm', () => {
    const { dir, file } = folderWith('random.dcm', noise(4096));
    expectOneLineError(['select', dir], file, /not a TIFF or DICOM/);
  });

  it('calls a PNG named .tif a PNG', () => {
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, ...noise(200)]);
    const { dir, file } = folderWith('image.tif', png);
    expectOneLineError(['select', dir, '--json'], file, /a PNG image, expected a 16-bit TIFF or DICOM/);
  });

  it('names a zero-byte file', () => {
    const { dir, file } = folderWith('empty.dcm', new Uint8Array(0));
    expectOneLineError(['select', dir], file, /empty file \(0 bytes\)/);
  });

  it('names an empty folder and a missing path', () => {
    const dir = join(root, 'empty-folder');
    mkdirSync(dir);
    expectOneLineError(['select', dir], dir, /no slice files found/);
    expectOneLineError(['select', join(root, 'missing')], join(root, 'missing'), /no such file or folder/);
  });

  it('fails the series with one bad slice among good ones, and goes on with the other series', () => {
    const study = join(root, 'study');
    const bad = join(study, 'SR_2');
    const good = join(study, 'SR_3');
    mkdirSync(bad, { recursive: true });
    mkdirSync(good, { recursive: true });
    for (const f of readdirSync(realB70f).filter((f) => f.endsWith('.tif'))) {
      copyFileSync(join(realB70f, f), join(bad, f));
      copyFileSync(join(realB70f, f), join(good, f));
    }
    writeFileSync(join(bad, '1-15.tif'), noise(1000));
    const run = runCli(['select', study, '--json']);
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split('\n')).toEqual([
      `covidct: ${bad}: series not selected: ${join(bad, '1-15.tif')}: not a TIFF or DICOM file, expected a 16-bit TIFF or DICOM CT slice`,
    ]);
    const out = JSON.parse(run.stdout) as {
      series: { id: string; threshold: number | null; selectedCount: number }[];
    };
    expect(out.series.map((s) => [s.id, s.threshold, s.selectedCount])).toEqual([
      ['SR_2', null, 0],
      ['SR_3', 9300, 12],
    ]);
  });

  it('rejects unknown options with usage help and exit code 1', () => {
    const run = runCli(['select', root, '--bogus']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/unknown option '--bogus'/);
  });
});
