/**
 * The gateway's C-STORE SCU against DCMTK's storescp: a slow destination is not a dead one (the
 * timeout is an idle time, each answer restarts it), and what the destination stored before an
 * attempt ended is reported as stored, so a retry does not start from zero.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildResultSr, type CovidctResult } from '../core/dicom/result-objects.js';
import { setUpDimse } from '../gateway/dimse.js';
import { storeInstances } from '../gateway/store-scu.js';
import { freePort } from '../local/ports.js';
import { GATEWAY_AE } from './helpers/gateway.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-gateway-delivery-');
// The library's log to nowhere (the gateway routes it to its own log; here it would fill the output).
setUpDimse({ info() {}, warn() {}, error() {} });
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

/**
 * storescp made slow, storing into `work/name`: `--sleep-after S` answers each store, then sleeps S seconds before it reads
 * the next; `--sleep-during S` stalls inside the store before it answers.
 */
async function slowDestination(
  name: string,
  how: '--sleep-after' | '--sleep-during',
  seconds: number,
): Promise<{ dir: string; port: number }> {
  const dir = join(work, name);
  mkdirSync(dir);
  const port = await freePort();
  const child = spawn(
    'storescp',
    ['-aet', 'DEST', '+xa', '+uf', how, String(seconds), '-od', dir, String(port)],
    { stdio: 'ignore', env: { ...process.env, TCP_NODELAY: '1' } },
  );
  children.push(child);
  // Ready when it accepts a connection.
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (up) return { dir, port };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('storescp did not start');
}

const FAILED: CovidctResult = { status: 'FAILED', studyId: 'st-1', reason: 'test' };

/** `count` SRs of as many "runs" (different decision times give different UIDs). */
function objects(count: number) {
  return Array.from({ length: count }, (_, i) => i + 1).map((n) => {
    const sr = buildResultSr({
      identity: {
        studyInstanceUid: '1.2.826.0.1.3680043.8.498.77',
        attributes: { PatientName: 'DELIVERY^TEST', PatientID: 'D-1' },
      },
      result: FAILED,
      decidedAt: new Date(Date.UTC(2026, 11, 5, 10, 0, n)),
    });
    return { bytes: sr.bytes, name: `sr-${n}.dcm`, uid: sr.sopInstanceUid };
  });
}

/** storeInstances from the gateway's AE title to DEST on loopback `port`, with an idle timeout. */
const deliverTo = (port: number, instances: ReturnType<typeof objects>, idleMs: number) =>
  storeInstances({ aeTitle: 'DEST', host: '127.0.0.1', port }, GATEWAY_AE, instances, idleMs);

describe('storeInstances', () => {
  it('keeps going while a slow destination answers (idle timeout, not a cap on the whole association)', {
    timeout: 60_000,
  }, async () => {
    const { dir, port } = await slowDestination('slow', '--sleep-after', 1);
    const sent = objects(4);
    // An answer about every second, four in about 3 s: longer than the 1.8 s timeout in all.
    const outcomes = await deliverTo(port, sent, 1800);
    expect(outcomes.map((o) => o.status)).toEqual([0, 0, 0, 0]);
    expect(outcomes.map((o) => o.sopInstanceUid)).toEqual(sent.map((s) => s.uid));
    expect(readdirSync(dir).filter((n) => !n.startsWith('.'))).toHaveLength(4);
  });

  it('ends an attempt whose destination stops answering, with the statuses it had, and aborts it', {
    timeout: 60_000,
  }, async () => {
    // 3 s per store against a 1.5 s idle timeout: no answer comes in time, so the attempt ends
    // with no status for any object (a retry sends them all), resolved rather than thrown, and
    // the association is aborted rather than left sending in the background.
    const { port } = await slowDestination('stalls', '--sleep-during', 3);
    const started = Date.now();
    const outcomes = await deliverTo(port, objects(3), 1500);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(outcomes.map((o) => o.status)).toEqual([undefined, undefined, undefined]);
  });
});
