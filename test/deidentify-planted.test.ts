/**
 * `covidct deidentify` checked from the outside (issue 14, section 1, "Independent checks"), on a
 * real CT series (Lung-PET-CT-Dx A0002, B40f) with planted identity written by
 * test/helpers/deid-plant.py: a unique marker in every attribute of PS3.15 Table E.1-1 (2024e)
 * that can hold one, in three-deep sequences, private blocks (also inside sequences), UN elements,
 * two character sets, the file meta, the preamble and trailing padding, identifying folder and file
 * names, TIFF tags, and non-CT instances (dose SR, encapsulated PDF, dose screen) in the study.
 *
 * - pydicom, tifffile and a byte search (test/helpers/deid-check.py) find no planted value in any
 *   file or path of OUT; the map file is 0600 and outside OUT; stdout holds no mapping;
 * - Orthanc 1.10's anonymizer (DICOM 2021b) removes, empties or replaces nothing that covidct keeps;
 * - dciodvfy reports no error on an output that it did not report on its source;
 * - `covidct select` makes the same selection before and after;
 * - a CT slice declaring burned-in annotation refuses the whole study, naming the file.
 *
 * Every check prints the full list of what it found, so a failure says which values survived where.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliRun, runCli } from './helpers/cli.js';
import { badUids, listFiles, mapPairs } from './helpers/deid-output.js';
import { type OrthancServer, startOrthanc } from './helpers/orthanc.js';
import {
  checkFolder,
  expectNone,
  NON_CT_FILES,
  type PlantManifest,
  pixelHashes,
  plantStudy,
  python,
  survivorLines,
} from './helpers/planted.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-planted-');

let manifest: PlantManifest;
let src: string;
const out = join(work, 'out');
const mapFile = join(work, 'map.json');
let run: CliRun;
let pairs: Map<string, string>; // OUT → SRC, by pixels
let outFiles: string[];

beforeAll(() => {
  manifest = plantStudy(join(work, 'plain'));
  src = manifest.root;
  run = runCli(['deidentify', src, out, '--map', mapFile]);
  outFiles = listFiles(out);
  const before = pixelHashes(src);
  const bySha = new Map(Object.entries(before).map(([path, sha]) => [sha, path]));
  pairs = new Map(
    Object.entries(pixelHashes(out)).flatMap(([path, sha]) =>
      bySha.has(sha) ? [[path, bySha.get(sha)!] as const] : [],
    ),
  );
}, 180_000);

describe('the planted study', () => {
  it('carries every planted value where the checker looks (so the checks below can fail)', () => {
    const report = checkFolder(join(work, 'plain'), src);
    console.info(
      `planted: ${manifest.markers.length} values (${manifest.tableRowsPlanted} of ${manifest.tableRows} Table E.1-1 rows, ` +
        `${manifest.ctFiles.length} CT slices, ${report.tiffFiles} TIFF slices, ${report.dicomFiles - manifest.ctFiles.length} non-CT instances) + ${manifest.pathMarkers.length} name markers`,
    );
    expect(report.missing).toEqual([]);
    expect(report.found.length).toBeGreaterThanOrEqual(manifest.markers.length + manifest.pathMarkers.length);
    expect(report.privateLeft.length).toBeGreaterThan(0);
  });
});

describe('covidct deidentify SRC OUT --map FILE', () => {
  it('exits 0 and writes only the CT and TIFF slices, under neutral names', () => {
    expect(run.code, run.stderr).toBe(0);
    expect(outFiles.filter((f) => !/^series-\d+\/slice-\d{4}\.(dcm|tiff?)$/.test(f))).toEqual([]);
    expect(outFiles.filter((f) => f.endsWith('.dcm'))).toHaveLength(manifest.ctFiles.length);
    expect(outFiles.filter((f) => /\.tiff?$/.test(f))).toHaveLength(3);
    // Every output is a source slice with its pixels unchanged.
    expect(outFiles.filter((f) => !pairs.has(f))).toEqual([]);
  });

  it('leaves no planted value in any file or path of OUT (pydicom, tifffile, bytes)', () => {
    const report = checkFolder(join(work, 'plain'), out);
    console.info(
      `planted values surviving in OUT: ${report.found.length} of ${manifest.markers.length + manifest.pathMarkers.length} (${report.survivors.length} places)`,
    );
    expectNone(survivorLines(report), 'planted values survived (marker, attribute, tag path, files)');
    expectNone(
      report.privateLeft.map((p) => p.where),
      'private elements left',
    );
    expect(report.dicom.length).toBe(manifest.ctFiles.length);
    for (const d of report.dicom) {
      expect(d.sopClass, d.file).toBe('1.2.840.10008.5.1.4.1.1.2');
      expect(d.identityRemoved, d.file).toBe('YES');
      expect(d.methodCodes, d.file).toContain('113100');
    }
  });

  it('leaves only new (2.25) or registered (1.2.840.10008) UIDs, at any depth and in the file meta', () => {
    const found = badUids(out);
    const source = badUids(src);
    console.info(
      `UIDs neither new nor registered: ${found.length} in OUT; ${source.length} in the source (the check can fail)`,
    );
    expect(source.length).toBeGreaterThan(manifest.ctFiles.length * 7);
    expectNone(found, 'UIDs neither new (2.25.) nor registered (1.2.840.10008.) left in OUT');
  });

  it('replaces UIDs consistently: one study, one series, one frame of reference, one new UID per planted UID', () => {
    const dicom = checkFolder(join(work, 'plain'), out).dicom;
    const distinct = (key: string) => new Set(dicom.map((d) => d.uids[key]));
    expect(dicom).toHaveLength(manifest.ctFiles.length);
    for (const key of ['study', 'series', 'frameOfReference', 'referencedSop']) {
      // The sources share each of these (the planted ReferencedSOPInstanceUID too).
      expect([...distinct(key)], key).toHaveLength(1);
      expect([...distinct(key)][0], key).toMatch(/^[0-9.]{3,64}$/);
    }
    expect(distinct('sop').size).toBe(dicom.length);
    for (const d of dicom) expect(d.uids.mediaSop, d.file).toBe(d.uids.sop);
  });

  it('writes the map 0600 outside OUT, naming every slice; stdout holds no mapping, stderr only the skipped files', () => {
    expect(existsSync(mapFile)).toBe(true);
    expect(statSync(mapFile).mode & 0o777).toBe(0o600);
    expect(relative(out, mapFile).startsWith('..')).toBe(true);
    const srcFiles = listFiles(src);
    const fromMap = mapPairs(readFileSync(mapFile, 'utf8'), srcFiles, outFiles);
    expect(Object.fromEntries(fromMap)).toEqual(Object.fromEntries(pairs));
    // stdout: no planted value, no source name (the SRC path the user typed aside), no output name paired with it.
    const stdout = run.stdout.split(src).join('<SRC>');
    const planted = [...manifest.markers.map((m) => m.marker), ...manifest.pathMarkers];
    expect(planted.filter((m) => stdout.includes(m))).toEqual([]);
    expect(srcFiles.map((f) => basename(f)).filter((name) => stdout.includes(name))).toEqual([]);
    // stderr: no attribute value; a line naming a source file only for the non-CT files, one each.
    expect(manifest.markers.map((m) => m.marker).filter((m) => run.stderr.includes(m))).toEqual([]);
    const skipped = NON_CT_FILES;
    const naming = run.stderr.split('\n').filter((l) => manifest.pathMarkers.some((m) => l.includes(m)));
    expect(naming.filter((l) => !skipped.some((s) => l.includes(s)))).toEqual([]);
    for (const s of skipped)
      expect(
        naming.filter((l) => l.includes(s)),
        s,
      ).toHaveLength(1);
    // The --json summary, too.
    const json = runCli([
      'deidentify',
      src,
      join(work, 'out-json'),
      '--json',
      '--map',
      join(work, 'map-json.json'),
    ]);
    expect(json.code, json.stderr).toBe(0);
    const summary = json.stdout.split(src).join('<SRC>');
    expect(planted.filter((m) => summary.includes(m))).toEqual([]);
    expect(srcFiles.map((f) => basename(f)).filter((name) => summary.includes(name))).toEqual([]);
  });

  it('refuses a study with a CT slice declaring burned-in annotation, naming the file, writing nothing', () => {
    const burned = plantStudy(join(work, 'burned'), true);
    const target = join(work, 'burned-out');
    const refused = runCli(['deidentify', burned.root, target, '--map', join(work, 'burned-map.json')]);
    expect(refused.code).not.toBe(0);
    const lines = refused.stderr.trim().split('\n');
    const file = burned.ctFiles[Math.floor(burned.ctFiles.length / 2)]!;
    expect(
      lines.filter((l) => l.includes(basename(file)) && /burn/i.test(l)),
      refused.stderr,
    ).toHaveLength(1);
    expect(listFiles(target)).toEqual([]);
  });
});

describe('Orthanc 1.10 anonymization (DICOM 2021b) of the same input', () => {
  let orthanc: OrthancServer | undefined;
  afterAll(async () => {
    await orthanc?.stop();
  });

  it('removes, empties or replaces nothing that covidct keeps', { timeout: 120_000 }, async () => {
    orthanc = await startOrthanc(join(work, 'orthanc'));
    const triples: { name: string; source: string; covidct: string; orthanc: string }[] = [];
    for (const [outPath, srcPath] of pairs) {
      if (!outPath.endsWith('.dcm')) continue;
      const bytes = readFileSync(join(src, srcPath));
      const id = await orthanc.upload(bytes);
      const anonymized = await orthanc.anonymize(id, { DicomVersion: '2021b', Force: true });
      const orthancFile = join(work, 'orthanc', `${basename(outPath, '.dcm')}-${triples.length}.dcm`);
      writeFileSync(orthancFile, anonymized);
      triples.push({
        name: srcPath,
        source: join(src, srcPath),
        covidct: join(out, outPath),
        orthanc: orthancFile,
      });
    }
    expect(triples).toHaveLength(manifest.ctFiles.length);
    const pairsFile = join(work, 'orthanc-pairs.json');
    writeFileSync(pairsFile, JSON.stringify(triples));
    const result = JSON.parse(python('deid-compare.py', [pairsFile])) as {
      compared: number;
      failures: { file: string; path: string; keyword: string; value: string; orthanc: string }[];
      orthancKeeps: number;
    };
    console.info(
      `orthanc: ${result.compared} source elements compared over ${triples.length} slices; ` +
        `${result.failures.length} kept by covidct but removed/emptied/replaced by Orthanc; ` +
        `${result.orthancKeeps} kept by Orthanc but not by covidct`,
    );
    const grouped = new Map<string, string[]>();
    for (const f of result.failures) {
      const key = `${f.path} ${f.keyword} = ${f.value} (Orthanc: ${f.orthanc})`;
      grouped.set(key, [...(grouped.get(key) ?? []), basename(f.file)]);
    }
    expectNone(
      [...grouped].map(([key, files]) => `${key} in ${files.join(', ')}`),
      'elements covidct keeps (source value) that Orthanc removes, empties or replaces',
    );
  });
});

/**
 * New dciodvfy errors that the table itself causes, with why: no de-identifier following Table
 * E.1-1 can avoid them (Orthanc's output of the same source has them too).
 */
const TABLE_MADE_ERRORS: readonly { line: RegExp; why: string }[] = [
  {
    line: /Type 1C Conditional Element=<ClinicalTrialProtocolEthicsCommitteeName> Module=<ClinicalTrialSubject>/,
    why: 'the table says D (keep, dummy) for the committee name and X for the approval number its condition depends on',
  },
];

describe('dciodvfy (dicom3tools)', () => {
  it('reports no error on an output that it did not report on its source', () => {
    const errors = (file: string): Set<string> => {
      // dciodvfy exits 1 on any error it reports; a run that did not happen (a spawn refused on a
      // loaded machine, a signal) would read as "no error" and, on a source, make every error of its
      // output look new: try again, then say so.
      let res = spawnSync('dciodvfy', [file], { encoding: 'utf8' });
      for (let retry = 0; retry < 2 && (res.error !== undefined || res.signal !== null); retry++) {
        res = spawnSync('dciodvfy', [file], { encoding: 'utf8' });
      }
      if (res.error !== undefined || res.signal !== null) {
        throw new Error(`dciodvfy did not run on ${file}: ${res.error?.message ?? `signal ${res.signal}`}`);
      }
      return new Set(
        `${res.stdout}\n${res.stderr}`
          .split('\n')
          .filter((l) => l.startsWith('Error'))
          .map((l) =>
            l
              .replace(/\d+(\.\d+){2,}/g, '<uid>')
              .replace(/ZQMK\S*/g, '<value>')
              .trim(),
          ),
      );
    };
    const added: string[] = [];
    let before = 0;
    let after = 0;
    let checked = 0;
    for (const [outPath, srcPath] of pairs) {
      if (!outPath.endsWith('.dcm')) continue;
      checked++;
      const a = errors(join(src, srcPath));
      const b = errors(join(out, outPath));
      before += a.size;
      after += b.size;
      for (const line of b) {
        if (a.has(line) || TABLE_MADE_ERRORS.some((e) => e.line.test(line))) continue;
        added.push(`${outPath} (${basename(srcPath)}): ${line}`);
      }
    }
    console.info(
      `dciodvfy: ${before} distinct errors on the sources, ${after} on the outputs, ${added.length} new`,
    );
    expect(checked).toBe(manifest.ctFiles.length);
    expectNone(added, 'dciodvfy errors on outputs that their sources do not have');
  });
});

describe('covidct select', () => {
  interface Selection {
    series: {
      id: string;
      threshold: number | null;
      selectedCount: number;
      slices: { file: string; selected: boolean }[];
    }[];
  }
  const select = (path: string): Selection =>
    JSON.parse(runCli(['select', path, '--json']).stdout) as Selection;

  it('makes the same selection before and after, slice for slice', () => {
    const before = select(src);
    const after = select(out);
    expect(after.series.length).toBe(2);
    for (const series of after.series) {
      const mapped = series.slices.map((s) => pairs.get(`${series.id}/${s.file}`));
      expect(
        mapped.every((m) => m !== undefined),
        series.id,
      ).toBe(true);
      const source = before.series.find((b) => b.slices.some((s) => `${b.id}/${s.file}` === mapped[0]));
      expect(source, series.id).toBeDefined();
      expect({
        threshold: series.threshold,
        selectedCount: series.selectedCount,
        count: series.slices.length,
      }).toEqual({
        threshold: source!.threshold,
        selectedCount: source!.selectedCount,
        count: source!.slices.length,
      });
      expect(series.slices.map((s, i) => [mapped[i], s.selected])).toEqual(
        source!.slices.map((s) => [`${source!.id}/${s.file}`, s.selected]),
      );
    }
  });
});
