/**
 * The gateway's end-to-end test against Orthanc (test/gateway-orthanc.test.ts): `covidct` child
 * processes whose output is kept, Orthanc's REST API, a study as Orthanc holds it (result objects
 * downloaded and read by pydicom through ./orthanc-charsets.py), and identity read as bytes.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { readTopLevelValues } from '../../core/dicom/deidentify.js';
import { CLI } from './cli.js';
import { sleep } from './gateway.js';
import type { OrthancServer } from './orthanc.js';

const run = promisify(execFile);
/** Writes the two studies from the real series, and reads result objects (pydicom). */
export const CHARSETS_HELPER = join(import.meta.dirname, 'orthanc-charsets.py');
/** Debian's Python, with pydicom. */
export const PYTHON = '/usr/bin/python3';

const SPECIFIC_CHARACTER_SET = 0x00080005;
const PATIENT_NAME = 0x00100010;
const PATIENT_ID = 0x00100020;

/** A study as the helper wrote it: identity (value bytes in hex) and UIDs. */
export interface MadeStudy {
  readonly PatientName: string;
  readonly PatientID: string;
  readonly SpecificCharacterSet: string;
  readonly decodedName: string;
  readonly StudyInstanceUID: string;
  readonly SeriesInstanceUIDs: string[];
  readonly SOPInstanceUIDs: string[];
  readonly name: string;
}

/** A result object as the helper reads it (pydicom). */
export interface ReadObject {
  readonly PatientName: string | null;
  readonly PatientID: string | null;
  readonly SpecificCharacterSet: string;
  readonly StudyInstanceUID: string;
  readonly sopClass: string;
  readonly sop: string;
  readonly series: string;
  readonly verification: string | null;
  readonly burnedIn: string | null;
  readonly sources: { sopClass: string; sop: string }[];
  readonly predecessors: { study: string; sop: string }[];
}

/** What `covidct dev --json` prints (the part used here). */
export interface DevInfo {
  readonly apiUrl: string;
}

/** A child process whose output is kept. */
export interface Child {
  readonly child: ChildProcess;
  readonly output: () => string;
}

/** `covidct …args` (dist) as a child process, its stdout and stderr kept together. */
export function spawnKept(args: readonly string[], env: NodeJS.ProcessEnv): Child {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const chunks: Buffer[] = [];
  child.stdout!.on('data', (c: Buffer) => chunks.push(c));
  child.stderr!.on('data', (c: Buffer) => chunks.push(c));
  return { child, output: () => Buffer.concat(chunks).toString('utf8') };
}

/** Start `covidct dev --json …`; resolves with its addresses once its JSON is complete. */
export async function startDev(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<Child & { info: DevInfo }> {
  const kept = spawnKept(['dev', '--json', ...args], env);
  for (let i = 0; i < 1200; i++) {
    if (kept.child.exitCode !== null) throw new Error(`covidct dev exited: ${kept.output().slice(-2000)}`);
    const out = kept.output();
    const start = out.indexOf('{\n');
    const end = out.indexOf('\n}', start);
    if (start >= 0 && end > start) {
      return { ...kept, info: JSON.parse(out.slice(start, end + 2)) as DevInfo };
    }
    await sleep(100);
  }
  throw new Error(`covidct dev printed no JSON within 120 s: ${kept.output().slice(-2000)}`);
}

/** SIGTERM and wait for the exit (a clean stop). */
export function stop(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    child.once('close', (code) => resolve(code));
    child.kill('SIGTERM');
  });
}

/** The gateway's JSON log lines with this message. */
export function logged(gateway: Child, message: string): Record<string, unknown>[] {
  return gateway
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.message === message);
}

/** An Orthanc REST call's JSON answer; throws on an HTTP error, naming the call. */
export async function rest<T>(orthanc: OrthancServer, path: string, init?: RequestInit): Promise<T> {
  const res = await fetch(`${orthanc.url}${path}`, init);
  if (!res.ok) throw new Error(`Orthanc ${init?.method ?? 'GET'} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** Orthanc's ids of the resources with this DICOM UID. */
export async function lookup(orthanc: OrthancServer, uid: string): Promise<{ ID: string; Type: string }[]> {
  return rest(orthanc, '/tools/lookup', { method: 'POST', body: uid });
}

/** A series as Orthanc's `/studies/{id}/series` lists it (the part used here). */
export interface OrthancSeries {
  readonly ID: string;
  readonly Instances: string[];
  readonly MainDicomTags: { readonly Modality?: string; readonly SeriesInstanceUID: string };
}

/** A study in Orthanc: its patient and, per SOP class, its instances (downloaded). */
export interface StudyInOrthanc {
  readonly orthancIds: string[];
  readonly patient: string;
  readonly files: { path: string; sha256: string; object: ReadObject }[];
}

/**
 * Everything Orthanc holds of a study (by StudyInstanceUID), result objects downloaded into `dir`
 * (made here) and read.
 */
export async function studyInOrthanc(
  orthanc: OrthancServer,
  studyUid: string,
  dir: string,
): Promise<StudyInOrthanc> {
  const studies = (await lookup(orthanc, studyUid)).filter((r) => r.Type === 'Study');
  const orthancIds = studies.map((s) => s.ID);
  if (studies.length !== 1) return { orthancIds, patient: '', files: [] };
  const id = studies[0]!.ID;
  const { ParentPatient } = await rest<{ ParentPatient: string }>(orthanc, `/studies/${id}`);
  const series = await rest<OrthancSeries[]>(orthanc, `/studies/${id}/series`);
  const paths: string[] = [];
  mkdirSync(dir);
  for (const s of series) {
    if (s.MainDicomTags.Modality === 'CT') continue;
    for (const instance of s.Instances) {
      const res = await fetch(`${orthanc.url}/instances/${instance}/file`);
      if (!res.ok) throw new Error(`Orthanc GET /instances/${instance}/file: ${res.status}`);
      const path = join(dir, `${instance}.dcm`);
      writeFileSync(path, new Uint8Array(await res.arrayBuffer()));
      paths.push(path);
    }
  }
  const read =
    paths.length === 0
      ? {}
      : (JSON.parse(
          (await run(PYTHON, [CHARSETS_HELPER, 'read', ...paths], { maxBuffer: 64 << 20 })).stdout,
        ) as Record<string, ReadObject>);
  return {
    orthancIds,
    patient: ParentPatient,
    files: paths.map((path) => ({
      path,
      sha256: createHash('sha256').update(readFileSync(path)).digest('hex'),
      object: read[path]!,
    })),
  };
}

/** The files of a study in Orthanc of one SOP class. */
export const ofClass = (s: StudyInOrthanc, sopClass: string) =>
  s.files.filter((f) => f.object.sopClass === sopClass);

/** Raw value bytes of the identity attributes, read from a file by covidct's own reader. */
export function rawIdentity(path: string): Record<string, string> {
  const { values } = readTopLevelValues(readFileSync(path), path, [
    SPECIFIC_CHARACTER_SET,
    PATIENT_NAME,
    PATIENT_ID,
  ]);
  const hex = (tag: number) => Buffer.from(values.get(tag) ?? new Uint8Array()).toString('hex');
  return {
    SpecificCharacterSet: hex(SPECIFIC_CHARACTER_SET),
    PatientName: hex(PATIENT_NAME),
    PatientID: hex(PATIENT_ID),
  };
}

/** Every file under `dir`. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(path));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}
