/**
 * The gateway end to end with real components: Debian's Orthanc as the hospital's PACS, `covidct
 * dev --data DIR` (the shipped default model, Grad-CAM overlays on) as the cloud, and `covidct
 * gateway` between them, all as child processes on loopback.
 *
 * Two studies of the bundled real series go from Orthanc to the gateway (`POST /modalities/…/store`):
 * one with a UTF-8 patient name (ISO_IR 192), one with a Japanese name in ISO 2022 IR 87 (escape
 * sequences). Their results come back into the same patient and study in Orthanc: a Comprehensive
 * SR (UNVERIFIED) and Secondary Capture overlays (burned-in, each referencing an original image),
 * valid for dciodvfy, with the identity byte-exact. A second run of a study gives a second SR that
 * names the first as its predecessor. Then, after a clean stop, nothing of the original identity is
 * anywhere in the stack's data folder (files and the DynamoDB LevelDB's decoded records) or logs.
 */

import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dciodvfyErrors, sleep } from './helpers/gateway.js';
import {
  type Child,
  type DevInfo,
  filesUnder,
  CHARSETS_HELPER as HELPER,
  logged,
  lookup,
  type MadeStudy,
  type OrthancSeries,
  ofClass,
  PYTHON,
  rawIdentity,
  rest,
  spawnKept,
  startDev,
  stop,
  studyInOrthanc as studyIn,
} from './helpers/gateway-orthanc.js';
import { freePort, type OrthancServer, startOrthanc } from './helpers/orthanc.js';
import { tempDir } from './helpers/tmp.js';

const run = promisify(execFile);
const work = tempDir('covidct-gw-orthanc-');
const FIXTURE = join(import.meta.dirname, '..', 'samples', 'lung-pet-ct-dx-A0002', 'B40f');
/** Slices of the second (Japanese) study: enough for a decision, few for time. */
const SECOND_STUDY_SLICES = 12;

const COMPREHENSIVE_SR = '1.2.840.10008.5.1.4.1.1.88.33';
const SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7';
const CT_IMAGE = '1.2.840.10008.5.1.4.1.1.2';

let downloads = 0;
/** Everything Orthanc holds of a study, downloaded into a folder of its own under `work`. */
const studyInOrthanc = (orthanc: OrthancServer, studyUid: string) =>
  studyIn(orthanc, studyUid, join(work, `download-${downloads++}`));

describe('Orthanc → covidct gateway → local stack → results in Orthanc', () => {
  const dataDir = join(work, 'data');
  const made: { utf8: MadeStudy; jis: MadeStudy } = {} as never;
  let orthanc: OrthancServer;
  let dev: Child & { info: DevInfo };
  let gateway: Child;
  /** Orthanc's ids of the originals: study → its instance ids. */
  const loaded = new Map<string, string[]>();
  /** The first run's SR of the UTF-8 study (file digest and SOP Instance UID). */
  let firstSr: { sop: string; sha256: string } | undefined;
  /** The SOP Instance UIDs of the first run's objects in the UTF-8 study. */
  const firstRunObjects = new Set<string>();

  beforeAll(async () => {
    // The two studies, written by pydicom from the bundled real series.
    const src = join(work, 'src');
    mkdirSync(src);
    for (const name of readdirSync(FIXTURE).filter((n) => n.endsWith('.dcm.gz'))) {
      writeFileSync(join(src, name.replace(/\.gz$/, '')), gunzipSync(readFileSync(join(FIXTURE, name))));
    }
    const studies = join(work, 'studies');
    const { stdout } = await run(PYTHON, [HELPER, 'make', src, studies, String(SECOND_STUDY_SLICES)]);
    Object.assign(made, JSON.parse(stdout) as typeof made);

    const key = 'orthanc-e2e-key-0123456789';
    dev = await startDev(['--port', '0', '--hospital', `h1=${key}`, '--data', dataDir], {
      COVIDCT_POOL_SIZE: '1',
    });

    const gatewayPort = await freePort();
    orthanc = await startOrthanc(join(work, 'orthanc'), {
      dicom: {
        aet: 'ORTHANC',
        modalities: { covidct: { aet: 'COVIDCT', host: '127.0.0.1', port: gatewayPort } },
      },
    });
    gateway = spawnKept(
      [
        'gateway',
        '--port',
        String(gatewayPort),
        '--ae-title',
        'COVIDCT',
        '--api',
        dev.info.apiUrl,
        '--destination',
        `ORTHANC@127.0.0.1:${orthanc.dicomPort}`,
        '--allow-caller',
        'ORTHANC@127.0.0.1',
        '--quiet-seconds',
        '1',
        '--state',
        join(work, 'gateway-state'),
      ],
      { COVIDCT_API_KEY: key },
    );
    for (let i = 0; logged(gateway, 'gateway listening').length === 0; i++) {
      if (gateway.child.exitCode !== null || i > 300) {
        throw new Error(`the gateway did not start: ${gateway.output().slice(-2000)}`);
      }
      await sleep(100);
    }

    for (const kind of ['utf8', 'jis'] as const) {
      const ids: string[] = [];
      const dir = join(studies, kind);
      for (const name of readdirSync(dir).sort())
        ids.push(await orthanc.upload(readFileSync(join(dir, name))));
      loaded.set(made[kind].StudyInstanceUID, ids);
    }
  }, 240_000);

  afterAll(async () => {
    if (gateway) await stop(gateway.child);
    if (dev) await stop(dev.child);
    await orthanc?.stop();
  });

  /** `POST /modalities/covidct/store` of a study (by UID), synchronously. */
  async function send(studyUid: string): Promise<void> {
    const [study] = (await lookup(orthanc, studyUid)).filter((r) => r.Type === 'Study');
    await rest(orthanc, '/modalities/covidct/store', {
      method: 'POST',
      body: JSON.stringify({ Resources: [study!.ID], Synchronous: true }),
    });
  }

  /** Wait until the gateway has delivered `runs` runs, then until Orthanc holds every object. */
  async function delivered(runs: number, studies: readonly string[]): Promise<void> {
    // A step that failed is retried by the gateway (a busy machine may time a request out): wait
    // for the deliveries, and name the failures if they do not come.
    for (let waited = 0; logged(gateway, 'result delivered').length < runs; waited += 500) {
      if (waited > 150_000 || gateway.child.exitCode !== null) {
        throw new Error(
          `${logged(gateway, 'result delivered').length} of ${runs} runs delivered; retries: ${JSON.stringify(
            logged(gateway, 'run step failed; retrying'),
          )}`,
        );
      }
      await sleep(500);
    }
    expect(logged(gateway, 'result delivered')).toHaveLength(runs);
    const objects = logged(gateway, 'result delivered').reduce((n, l) => n + (l.objects as number), 0);
    await expect
      .poll(
        async () => {
          let n = 0;
          // Every Orthanc study of these UIDs: a result with another PatientID would make its own.
          for (const uid of studies) {
            for (const study of (await lookup(orthanc, uid)).filter((r) => r.Type === 'Study')) {
              for (const s of await rest<OrthancSeries[]>(orthanc, `/studies/${study.ID}/series`)) {
                if (s.MainDicomTags.Modality !== 'CT') n += s.Instances.length;
              }
            }
          }
          return n;
        },
        { timeout: 30_000, interval: 250 },
      )
      .toBe(objects);
  }

  it('returns a Comprehensive SR and burned-in overlays into each patient’s study, valid and byte-exact in identity', {
    timeout: 240_000,
  }, async () => {
    const started = Date.now();
    for (const kind of ['utf8', 'jis'] as const) await send(made[kind].StudyInstanceUID);
    const sentAt = Date.now();
    await delivered(2, [made.utf8.StudyInstanceUID, made.jis.StudyInstanceUID]);
    console.info(
      `gateway-orthanc: store ${((sentAt - started) / 1000).toFixed(1)} s, results in Orthanc ${((Date.now() - sentAt) / 1000).toFixed(1)} s later`,
    );

    for (const kind of ['utf8', 'jis'] as const) {
      const m = made[kind];
      const study = await studyInOrthanc(orthanc, m.StudyInstanceUID);
      // One Orthanc study (Orthanc keys a study by PatientID and StudyInstanceUID): the results are
      // in the patient's study, under the patient of the originals.
      expect(study.orthancIds, kind).toHaveLength(1);
      const firstOriginal = await rest<{ ParentSeries: string }>(
        orthanc,
        `/instances/${loaded.get(m.StudyInstanceUID)![0]}`,
      );
      const originalSeries = await rest<{ ParentStudy: string }>(
        orthanc,
        `/series/${firstOriginal.ParentSeries}`,
      );
      expect(originalSeries.ParentStudy).toBe(study.orthancIds[0]);
      // Two patients in Orthanc, one per original study: no result made a patient of its own.
      expect(await rest<string[]>(orthanc, '/patients')).toHaveLength(2);

      const srs = ofClass(study, COMPREHENSIVE_SR);
      const overlays = ofClass(study, SECONDARY_CAPTURE);
      expect(srs, kind).toHaveLength(1);
      expect(srs[0]!.object.verification).toBe('UNVERIFIED');
      expect(srs[0]!.object.predecessors).toEqual([]);
      // Nothing but the SR and the overlays came back.
      expect(study.files.length).toBe(srs.length + overlays.length);
      // The real series has COVID-labelled slices under the default model (as the smoke run saw).
      if (kind === 'utf8') expect(overlays.length).toBeGreaterThan(0);
      const originals = new Set(m.SOPInstanceUIDs);
      for (const o of overlays) {
        expect(o.object.burnedIn).toBe('YES');
        expect(o.object.sources).toHaveLength(1);
        expect(o.object.sources[0]!.sopClass).toBe(CT_IMAGE);
        expect(originals.has(o.object.sources[0]!.sop), `${o.object.sources[0]!.sop} is an original`).toBe(
          true,
        );
      }

      const originalFile = join(work, 'studies', kind, '1-01.dcm');
      const originalRaw = rawIdentity(originalFile);
      for (const f of study.files) {
        // Same study, new series and instances.
        expect(f.object.StudyInstanceUID).toBe(m.StudyInstanceUID);
        expect(m.SeriesInstanceUIDs).not.toContain(f.object.series);
        expect(originals.has(f.object.sop)).toBe(false);
        // Identity byte-exact, as pydicom reads the value bytes and as covidct's reader does.
        expect(f.object.PatientName, `${kind} PatientName`).toBe(m.PatientName);
        expect(f.object.PatientID, `${kind} PatientID`).toBe(m.PatientID);
        expect(f.object.SpecificCharacterSet).toBe(m.SpecificCharacterSet);
        expect(rawIdentity(f.path), `${kind} raw identity`).toEqual(originalRaw);
        expect(await dciodvfyErrors(f.path), `dciodvfy ${kind} ${f.object.sopClass}`).toEqual([]);
      }
      console.info(`gateway-orthanc: ${kind} study: ${srs.length} SR + ${overlays.length} overlays`);
      if (kind === 'utf8') {
        firstSr = { sop: srs[0]!.object.sop, sha256: srs[0]!.sha256 };
        for (const f of study.files) firstRunObjects.add(f.object.sop);
      }
    }
    // The name as it was written: the Japanese one with its ISO 2022 escape sequences.
    expect(Buffer.from(made.jis.PatientName, 'hex').includes(Buffer.from('\x1b$B'))).toBe(true);
  });

  it('a second run of a study gives a second SR that names the first as its predecessor', {
    timeout: 240_000,
  }, async () => {
    expect(firstSr).toBeDefined();
    await send(made.utf8.StudyInstanceUID);
    await delivered(3, [made.utf8.StudyInstanceUID, made.jis.StudyInstanceUID]);
    const study = await studyInOrthanc(orthanc, made.utf8.StudyInstanceUID);
    const srs = ofClass(study, COMPREHENSIVE_SR);
    expect(srs).toHaveLength(2);
    const first = srs.find((s) => s.object.sop === firstSr!.sop);
    const second = srs.find((s) => s.object.sop !== firstSr!.sop);
    // The first run's SR is as it was.
    expect(first?.sha256).toBe(firstSr!.sha256);
    expect(second!.object.predecessors).toEqual([{ study: made.utf8.StudyInstanceUID, sop: firstSr!.sop }]);
    // The second run's objects: new instances (an SR and as many overlays), as valid and as exact.
    const added = study.files.filter((f) => !firstRunObjects.has(f.object.sop));
    expect(added.length).toBe(firstRunObjects.size);
    expect(added.filter((f) => f.object.sopClass === COMPREHENSIVE_SR)).toHaveLength(1);
    const originalRaw = rawIdentity(join(work, 'studies', 'utf8', '1-01.dcm'));
    for (const f of added) {
      expect(f.object.StudyInstanceUID).toBe(made.utf8.StudyInstanceUID);
      expect(f.object.PatientName).toBe(made.utf8.PatientName);
      expect(rawIdentity(f.path)).toEqual(originalRaw);
      if (f.object.sopClass === SECONDARY_CAPTURE) {
        expect(made.utf8.SOPInstanceUIDs).toContain(f.object.sources[0]?.sop);
      }
      expect(await dciodvfyErrors(f.path), `dciodvfy ${f.object.sopClass}`).toEqual([]);
    }
    // The other study still has its one SR.
    expect(ofClass(await studyInOrthanc(orthanc, made.jis.StudyInstanceUID), COMPREHENSIVE_SR)).toHaveLength(
      1,
    );
  });

  it('leaves none of the original identity in the stack’s data folder or logs after a clean stop', {
    timeout: 120_000,
  }, async () => {
    expect(await stop(gateway.child)).toBe(0);
    expect(await stop(dev.child)).toBe(0);
    const needles: { what: string; bytes: Buffer }[] = [];
    const add = (what: string, bytes: Buffer) => needles.push({ what, bytes });
    const trim = (hex: string) =>
      Buffer.from(hex, 'hex')
        .toString('latin1')
        .replace(/[ \0]+$/, '');
    for (const kind of ['utf8', 'jis'] as const) {
      const m = made[kind];
      add(`${kind} PatientName as stored`, Buffer.from(trim(m.PatientName), 'latin1'));
      add(`${kind} PatientID as stored`, Buffer.from(trim(m.PatientID), 'latin1'));
      add(
        `${kind} PatientID as UTF-8`,
        Buffer.from(Buffer.from(trim(m.PatientID), 'latin1').toString('utf8')),
      );
      // Each name component, in UTF-8 (what a decoder would have made of it) and as stored.
      for (const part of m.name.split(/[\^=]/))
        if (part.length > 1) add(`${kind} name part`, Buffer.from(part));
      for (const part of Buffer.from(trim(m.PatientName), 'latin1').toString('latin1').split(/[\^=]/)) {
        if (part.length > 2) add(`${kind} stored name part`, Buffer.from(part, 'latin1'));
      }
      add(`${kind} StudyInstanceUID`, Buffer.from(m.StudyInstanceUID));
      for (const uid of m.SeriesInstanceUIDs) add(`${kind} SeriesInstanceUID`, Buffer.from(uid));
      for (const uid of m.SOPInstanceUIDs) add(`${kind} SOPInstanceUID`, Buffer.from(uid));
    }
    add('utf8 name part in Latin-1', Buffer.from('Müller', 'latin1'));

    const files = filesUnder(dataDir);
    expect(files.length).toBeGreaterThan(0);
    const megabytes = files.reduce((n, f) => n + statSync(f).size, 0) / 1e6;
    const haystacks: { where: string; bytes: Buffer }[] = files.map((f) => ({
      where: f,
      bytes: readFileSync(f),
    }));
    // LevelDB compresses its tables (Snappy): the DynamoDB records decoded, too.
    const { ClassicLevel } = await import('classic-level');
    const db = new ClassicLevel<Buffer, Buffer>(join(dataDir, 'dynamodb'), {
      keyEncoding: 'buffer',
      valueEncoding: 'buffer',
    });
    const records: Buffer[] = [];
    for await (const [k, v] of db.iterator()) records.push(k, v);
    await db.close();
    expect(records.length).toBeGreaterThan(0);
    haystacks.push({ where: 'DynamoDB records', bytes: Buffer.concat(records) });
    haystacks.push({ where: 'covidct dev output', bytes: Buffer.from(dev.output()) });
    haystacks.push({ where: 'gateway log', bytes: Buffer.from(gateway.output()) });
    const found = new Set<string>();
    for (const h of haystacks) {
      for (const n of needles) if (h.bytes.includes(n.bytes)) found.add(`${n.what} in ${h.where}`);
    }
    expect([...found]).toEqual([]);
    console.info(
      `gateway-orthanc: scanned ${files.length} files (${megabytes.toFixed(1)} MB), ${records.length / 2} DynamoDB records, for ${needles.length} identity strings`,
    );
  });
});
