/**
 * The gateway's FAILED results: a study it may not send for analysis, and a study the cloud ended
 * FAILED, each become one Comprehensive SR with CompletionFlag PARTIAL and the reason, in the
 * patient's study with its identity as received.
 *
 * - dimse level: a study with a BurnedInAnnotation YES slice, sent with storescu to an in-process
 *   gateway (the API unreachable: nothing is uploaded), gives exactly one SR at a storescp
 *   destination that says "not sent for analysis" and why; dciodvfy finds no error; PatientName's
 *   bytes are the original's.
 * - unit level: `resultOf` turns a FAILED status into a FailedResult with its reason, and
 *   `buildRunResults` makes a PARTIAL SR of it.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startGateway } from '../gateway/gateway.js';
import { buildRunResults, resultOf } from '../gateway/results.js';
import { freePort } from '../local/ports.js';
import {
  GATEWAY_AE as AE,
  dciodvfyErrors,
  DICOM_FIXTURES as FIXTURES,
  memoryLog,
  storescu,
  variant,
} from './helpers/gateway.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-gw-failed-');
/** A fresh folder inside `work` (tempDir registers its cleanup with afterAll: not from inside a test). */
const scratch = (prefix: string) => mkdtempSync(join(work, prefix));
const COMPREHENSIVE_SR = '1.2.840.10008.5.1.4.1.1.88.33';

/** What pydicom reads from each file: SOP class, study, CompletionFlag, every TextValue, PatientName's raw bytes. */
interface Read {
  sopClass: string;
  study: string;
  completion: string | null;
  texts: string[];
  patientName: string;
}
const READ_PY = `
import json, sys, pydicom
out = {}
for f in sys.argv[1:]:
    ds = pydicom.dcmread(f)
    raw = ds.get_item(0x00100010)
    texts = []
    def walk(items):
        for i in items:
            if 'TextValue' in i: texts.append(str(i.TextValue))
            if 'ContentSequence' in i: walk(i.ContentSequence)
    walk(ds.get('ContentSequence', []))
    out[f] = {'sopClass': str(ds.SOPClassUID), 'study': str(ds.StudyInstanceUID),
              'completion': ds.get('CompletionFlag'), 'texts': texts,
              'patientName': bytes(raw.value).hex() if raw is not None else ''}
print(json.dumps(out))
`;

function readAll(files: readonly string[]): Record<string, Read> {
  const res = spawnSync('/usr/bin/python3', ['-c', READ_PY, ...files], { encoding: 'utf8' });
  expect(res.status, res.stderr).toBe(0);
  return JSON.parse(res.stdout) as Record<string, Read>;
}

const STUDY = '1.2.826.0.1.3680043.9.7133.15.8';

describe('a study the gateway may not send', () => {
  it('burned-in annotation: one PARTIAL SR at the destination saying why, identity as received', async () => {
    const input = scratch('input-');
    /** A slice of the study's one series, of the one patient. */
    const slice = (name: string, instance: number, values: Readonly<Record<string, string>>) =>
      variant(input, name, {
        '(0010,0010)': 'BURNED^IN^ANNOTATION',
        '(0010,0020)': 'PID-BURNED',
        '(0020,000d)': STUDY,
        '(0020,000e)': `${STUDY}.1`,
        '(0008,0018)': `${STUDY}.1.${instance}`,
        ...values,
      });
    const burned = await slice('burned', 1, { '(0028,0301)': 'YES' });
    // A second slice without the flag: one burned-in slice refuses the whole study.
    const clean = await slice('clean', 2, { '(0020,0013)': '2' });
    const destDir = scratch('dest-');
    const destPort = await freePort();
    const dest: ChildProcess = spawn(
      'storescp',
      ['-aet', 'DEST', '+xa', '+uf', '-od', destDir, String(destPort)],
      { stdio: 'ignore' },
    );
    const log = memoryLog();
    const gateway = await startGateway({
      port: 0,
      aeTitle: AE,
      allow: [{ aeTitle: 'PACS' }],
      destination: { aeTitle: 'DEST', host: '127.0.0.1', port: destPort },
      // Nothing listens there: the study must never get as far as an upload.
      api: { api: 'http://127.0.0.1:9', key: 'unused' },
      stateDir: scratch('state-'),
      quietSeconds: 1,
      retrySeconds: 0.2,
      maxRetrySeconds: 1,
      log,
    });
    try {
      const sent = await storescu(gateway.port, 'PACS', [burned, clean]);
      expect(sent.code, sent.output).toBe(0);
      expect(sent.output).not.toMatch(/^E:/m);
      await expect
        .poll(() => log.lines.some((l) => l.message === 'result delivered'), {
          timeout: 30_000,
          interval: 100,
        })
        .toBe(true);
      await gateway.idle();
      const files = readdirSync(destDir)
        .filter((n) => !n.startsWith('.'))
        .map((n) => join(destDir, n));
      const read = readAll(files);
      const srs = files.filter((f) => read[f]!.sopClass === COMPREHENSIVE_SR);
      expect(files).toHaveLength(1);
      expect(srs).toHaveLength(1);
      const sr = read[srs[0]!]!;
      expect(sr.study).toBe(STUDY);
      expect(sr.completion).toBe('PARTIAL');
      const reason = sr.texts.find((t) => t.includes('not sent for analysis'));
      expect(reason, JSON.stringify(sr.texts)).toBeDefined();
      expect(reason).toMatch(/BurnedInAnnotation/);
      expect(dciodvfyErrors(srs[0]!)).toEqual([]);
      expect(sr.patientName).toBe(readAll([burned])[burned]!.patientName);
      expect(sr.patientName).toBe(Buffer.from('BURNED^IN^ANNOTATION').toString('hex'));
      // Never uploaded: no upload step was tried (the API is unreachable, it would have retried).
      expect(log.lines.filter((l) => l.message === 'run step failed; retrying')).toEqual([]);
      expect(log.lines.filter((l) => l.message === 'study complete: run started')).toHaveLength(1);
    } finally {
      await gateway.stop();
      dest.kill('SIGTERM');
    }
  }, 60_000);
});

describe('a study the cloud ended FAILED', () => {
  it('resultOf gives a FailedResult with the reason; buildRunResults makes a PARTIAL SR of it', async () => {
    const result = resultOf({ studyId: 'study-1', status: 'FAILED', reason: 'no series had a CT slice' });
    expect(result).toEqual({ status: 'FAILED', studyId: 'study-1', reason: 'no series had a CT slice' });
    // Without a reason, the status is the reason; a COMPLETE status without its report is no decision.
    expect(resultOf({ studyId: 'study-2', status: 'FAILED' })).toMatchObject({
      status: 'FAILED',
      reason: 'the study ended FAILED',
    });
    expect(resultOf({ studyId: 'study-3', status: 'COMPLETE' }).status).toBe('FAILED');

    const source = join(FIXTURES, 'CT_small.dcm');
    const { sr, overlays } = await buildRunResults({
      sourceFiles: [source],
      result,
      decidedAt: new Date('2026-01-02T03:04:05Z'),
      overlays: [],
    });
    expect(overlays).toEqual([]);
    const file = join(scratch('sr-'), 'sr.dcm');
    writeFileSync(file, sr.bytes);
    const read = readAll([file, source]);
    expect(read[file]!.completion).toBe('PARTIAL');
    expect(read[file]!.texts).toContain('no series had a CT slice');
    expect(read[file]!.study).toBe(read[source]!.study);
    expect(read[file]!.patientName).toBe(read[source]!.patientName);
    expect(dciodvfyErrors(file)).toEqual([]);
  });
});
