/**
 * The gateway's DICOM side against DCMTK (echoscu, storescu) as an independent client, with no
 * pipeline: the gateway points at an API that does not answer and a long quiet period, so what
 * is checked is the association policy and what lands in the state folder.
 *
 * - C-ECHO works for an allowed caller; a caller not allowed (by AE title, or by host), or a
 *   wrong called AE title, is rejected at association.
 * - A CT image in every transfer syntax covidct reads is spooled with its data set exactly as
 *   sent, and covidct's reader decodes the spooled file.
 * - A non-CT instance is accepted and discarded with one log line, or refused at association
 *   with `refuseOtherSopClasses`.
 * - A corrupt data set gets a failure status and nothing is spooled.
 * - The same instance sent twice is one file; two patients in one association are two studies.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type * as Dimse from 'dcmjs-dimse';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { part10DataSet } from '../core/dicom/implicit.js';
import { IMPLICIT_VR_LE } from '../core/dicom/syntax.js';
import { decodeSlice } from '../core/read.js';
import { type Gateway, startGateway } from '../gateway/gateway.js';
import { GatewayState } from '../gateway/state.js';
import { STATUS_CANNOT_UNDERSTAND } from '../gateway/store-scp.js';
import { freePort } from '../local/ports.js';
import {
  GATEWAY_AE as AE,
  dcmtk,
  DICOM_FIXTURES as FIXTURES,
  memoryLog,
  storescu,
  variant,
} from './helpers/gateway.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-gw-dimse-');
/** A fresh folder inside `work` (tempDir registers its cleanup with afterAll: not from inside a hook or test). */
const scratch = (prefix: string) => mkdtempSync(join(work, prefix));

/** A gateway with its state, log and helpers; the API is unreachable and nothing is ever due. */
interface TestGateway {
  readonly gateway: Gateway;
  readonly state: GatewayState;
  readonly stateDir: string;
  readonly log: ReturnType<typeof memoryLog>;
  /** storescu from `aet` to the gateway. */
  storescu(
    aet: string,
    files: readonly string[],
    extra?: readonly string[],
  ): Promise<{ code: number; output: string }>;
  /** Every spooled instance file, by study key. */
  spooled(): Map<string, string[]>;
}

async function openGateway(options: { refuseOtherSopClasses?: boolean } = {}): Promise<TestGateway> {
  const stateDir = scratch('dimse-');
  // Opened first: the secret is made now, so the test can name the files the gateway will write.
  const state = await GatewayState.open(stateDir);
  const log = memoryLog();
  const gateway = await startGateway({
    port: 0,
    aeTitle: AE,
    allow: [
      { aeTitle: 'PACS' },
      { aeTitle: 'LOCALPACS', host: '127.0.0.1' },
      { aeTitle: 'FARPACS', host: '10.9.9.9' },
    ],
    destination: { aeTitle: 'DEST', host: '127.0.0.1', port: 9 },
    api: { api: 'http://127.0.0.1:9', key: 'unused' },
    stateDir,
    quietSeconds: 86_400,
    refuseOtherSopClasses: options.refuseOtherSopClasses ?? false,
    log,
  });
  return {
    gateway,
    state,
    stateDir,
    log,
    storescu: (aet, files, extra = []) => storescu(gateway.port, aet, files, extra),
    spooled() {
      const out = new Map<string, string[]>();
      const studies = join(stateDir, 'studies');
      for (const study of readdirSync(studies)) {
        const dir = join(studies, study, 'instances');
        out.set(
          study,
          readdirSync(dir).map((f) => join(dir, f)),
        );
      }
      return out;
    },
  };
}

/** The SOP Instance UID and transfer syntax a Part 10 file's meta names. */
function metaOf(path: string) {
  return part10DataSet(readFileSync(path), path);
}

let gw: TestGateway;
let refusing: TestGateway;
beforeAll(async () => {
  gw = await openGateway();
  refusing = await openGateway({ refuseOtherSopClasses: true });
});
afterAll(async () => {
  await gw?.gateway.stop();
  await refusing?.gateway.stop();
});

describe('association policy', () => {
  const echo = (aet: string, aec = AE) =>
    dcmtk('echoscu', ['-aet', aet, '-aec', aec, '127.0.0.1', String(gw.gateway.port)]);

  it('answers C-ECHO from an allowed caller, by AE title or by AE title and host', async () => {
    expect((await echo('PACS')).code).toBe(0);
    expect((await echo('LOCALPACS')).code).toBe(0);
  });

  it('rejects a caller not allowed, a caller from the wrong host, and a wrong called AE title', async () => {
    const before = gw.log.lines.length;
    const stranger = await echo('STRANGER');
    expect(stranger.code).not.toBe(0);
    expect(stranger.output).toMatch(/Association Rejected/i);
    const wrongHost = await echo('FARPACS');
    expect(wrongHost.code).not.toBe(0);
    expect(wrongHost.output).toMatch(/Association Rejected/i);
    const wrongCalled = await echo('PACS', 'NOTCOVIDCT');
    expect(wrongCalled.code).not.toBe(0);
    expect(wrongCalled.output).toMatch(/Association Rejected/i);
    const rejections = gw.log.lines.slice(before).filter((l) => l.message.startsWith('association rejected'));
    expect(rejections.map((l) => l.message)).toEqual([
      'association rejected: caller not allowed',
      'association rejected: caller not allowed',
      'association rejected: called AE title is not ours',
    ]);
  });

  it('stores nothing from a rejected caller', async () => {
    const sent = await gw.storescu('STRANGER', [join(FIXTURES, 'ct-small-implicit.dcm')]);
    expect(sent.code).not.toBe(0);
    expect(gw.spooled().size).toBe(0);
  });
});

/** Each transfer syntax covidct reads, with a CT fixture in it. */
const SYNTAXES: readonly { name: string; file: string; uid: string; propose: string }[] = [
  {
    name: 'implicit VR little endian',
    file: 'ct-small-implicit.dcm',
    uid: '1.2.840.10008.1.2',
    propose: '-xi',
  },
  { name: 'explicit VR little endian', file: 'CT_small.dcm', uid: '1.2.840.10008.1.2.1', propose: '-xe' },
  {
    name: 'explicit VR big endian',
    file: 'ct-small-bigendian.dcm',
    uid: '1.2.840.10008.1.2.2',
    propose: '-xb',
  },
  {
    name: 'deflated explicit VR little endian',
    file: 'ct-small-deflated.dcm',
    uid: '1.2.840.10008.1.2.1.99',
    propose: '-xd',
  },
  { name: 'RLE lossless', file: 'lung-rle-lossless.dcm', uid: '1.2.840.10008.1.2.5', propose: '-xr' },
  {
    name: 'JPEG lossless SV1',
    file: 'lung-jpeg-lossless-sv1.dcm',
    uid: '1.2.840.10008.1.2.4.70',
    propose: '-xs',
  },
  {
    name: 'JPEG-LS lossless',
    file: 'lung-jpegls-lossless.dcm',
    uid: '1.2.840.10008.1.2.4.80',
    propose: '-xt',
  },
  {
    name: 'JPEG 2000 lossless',
    file: 'lung-j2k-lossless.dcm',
    uid: '1.2.840.10008.1.2.4.90',
    propose: '-xv',
  },
];

describe('CT images in every transfer syntax covidct reads', () => {
  // DCMTK's storescp in bit-preserving mode (+B) writes each data set as it came over the network:
  // the reference for "what storescu sent" (storescu re-encodes files as it reads them).
  let reference: { dir: string; port: number; child: ChildProcess };
  beforeAll(async () => {
    const dir = scratch('storescp-');
    const port = await freePort();
    const child = spawn('storescp', ['-aet', 'REF', '+xa', '+B', '-od', dir, String(port)], {
      stdio: 'ignore',
    });
    reference = { dir, port, child };
    for (let i = 0; (await dcmtk('echoscu', ['-aec', 'REF', '127.0.0.1', String(port)])).code !== 0; i++) {
      if (i > 100) throw new Error('storescp did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  afterAll(() => void reference?.child.kill('SIGTERM'));

  it.each(SYNTAXES)('$name: spooled as sent, readable by covidct', async ({ file, uid, propose }) => {
    const path = join(FIXTURES, file);
    const original = metaOf(path);
    expect(original.transferSyntaxUid).toBe(uid);
    // Each proposal option puts the file's own syntax in a context of its own: sent as stored.
    const sent = await gw.storescu('PACS', [path], [propose]);
    expect(sent.code, sent.output).toBe(0);
    for (const f of readdirSync(reference.dir)) rmSync(join(reference.dir, f));
    const ref = await dcmtk('storescu', ['-aec', 'REF', propose, '127.0.0.1', String(reference.port), path]);
    expect(ref.code, ref.output).toBe(0);
    const [refFile] = readdirSync(reference.dir);
    const wire = metaOf(join(reference.dir, refFile!));
    expect(wire.transferSyntaxUid).toBe(uid);

    const spooledPath = [...gw.spooled().values()]
      .flat()
      .find((f) => f.endsWith(`${gw.state.keyOf('instance', original.sopInstanceUid)}.dcm`));
    expect(spooledPath).toBeDefined();
    const spooled = metaOf(spooledPath!);
    expect(spooled.transferSyntaxUid).toBe(uid);
    expect(spooled.sopInstanceUid).toBe(original.sopInstanceUid);
    expect(spooled.dataSet.length).toBe(wire.dataSet.length);
    expect(Buffer.from(spooled.dataSet).equals(Buffer.from(wire.dataSet))).toBe(true);
    const decoded = await decodeSlice(readFileSync(spooledPath!), spooledPath!);
    const expected = await decodeSlice(readFileSync(path), path);
    expect(decoded.header.width).toBe(expected.header.width);
    expect(Buffer.from(decoded.pixels.buffer).equals(Buffer.from(expected.pixels.buffer))).toBe(true);
  });
});

describe('other SOP classes', () => {
  it('accepts and discards an MR image with one log line', async () => {
    const before = gw.log.lines.length;
    const spooledBefore = [...gw.spooled().values()].flat().length;
    const sent = await gw.storescu('PACS', [join(FIXTURES, 'MR_small.dcm')]);
    expect(sent.code, sent.output).toBe(0);
    const lines = gw.log.lines.slice(before).filter((l) => l.message.startsWith('instance discarded'));
    expect(lines).toHaveLength(1);
    expect(lines[0]!.attrs.sopClass).toBe('1.2.840.10008.5.1.4.1.1.4');
    expect([...gw.spooled().values()].flat()).toHaveLength(spooledBefore);
  });

  it('refuses an MR image at association with refuseOtherSopClasses', async () => {
    const startedAt = Date.now();
    const sent = await refusing.storescu('PACS', [join(FIXTURES, 'MR_small.dcm')]);
    expect(sent.code).not.toBe(0);
    // storescu aborts the association and waits for the gateway to close it (30 s if it does not).
    expect(Date.now() - startedAt).toBeLessThan(10_000);
    expect(sent.output).toMatch(/no presentation context|no acceptable presentation contexts/i);
    expect(refusing.spooled().size).toBe(0);
    // CT is still taken on such a gateway.
    expect((await refusing.storescu('PACS', [join(FIXTURES, 'CT_small.dcm')])).code).toBe(0);
    expect(refusing.spooled().size).toBe(1);
  });
});

/**
 * Send Part 10 files (implicit VR little endian, which the gateway picks first) over one association as their bytes, whatever they
 * hold (storescu and storeInstances both parse what they send); resolves with each C-STORE status.
 */
function sendRaw(port: number, files: readonly Uint8Array[]): Promise<(number | undefined)[]> {
  const dimse = createRequire(import.meta.url)('dcmjs-dimse') as typeof Dimse;
  const client = new dimse.Client();
  const statuses: (number | undefined)[] = files.map(() => undefined);
  for (const [i, bytes] of files.entries()) {
    const parts = part10DataSet(bytes, `file ${i}`);
    const dataset = new dimse.Dataset(
      { SOPClassUID: parts.sopClassUid, SOPInstanceUID: parts.sopInstanceUid },
      parts.transferSyntaxUid,
    );
    dataset.getDenaturalizedDataset = () => Buffer.from(parts.dataSet);
    const request = new dimse.requests.CStoreRequest(dataset);
    request.on('response', (response: Dimse.responses.CStoreResponse) => {
      statuses[i] = response.getStatus();
    });
    client.addRequest(request);
  }
  return new Promise((resolve, reject) => {
    client.on('associationAccepted', (association: Dimse.association.Association) => {
      for (const { id } of association.getPresentationContexts()) {
        const syntax = association.getPresentationContext(id).getAcceptedTransferSyntaxUid();
        if (syntax !== IMPLICIT_VR_LE) reject(new Error(`the gateway chose ${syntax}`));
      }
    });
    client.on('networkError', reject);
    client.on('closed', () => resolve(statuses));
    client.send('127.0.0.1', port, 'PACS', AE);
  });
}

describe('bad input', () => {
  const input = scratch('input-');

  it('answers a truncated or damaged data set, or one without pixel data, with a failure status and spools nothing', async () => {
    const whole = readFileSync(
      await variant(
        input,
        'corrupt',
        { '(0008,0018)': '1.2.826.0.1.3680043.9.7133.1.1', '(0020,000d)': '1.2.826.0.1.3680043.9.7133.1' },
        'ct-small-implicit.dcm',
      ),
    );
    const truncated = whole.subarray(0, whole.length - 1000);
    // The data set's first element (implicit VR) claims 16 MiB.
    const damaged = Buffer.from(whole);
    const dataSetAt = whole.length - part10DataSet(whole, 'corrupt').dataSet.length;
    damaged.writeUInt32LE(0xfff000, dataSetAt + 4);
    // Cut exactly before its pixel data (7FE0,0010 in implicit VR little endian): a valid data set, no image.
    const noPixels = whole.subarray(0, whole.lastIndexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00])));
    const before = [...gw.spooled().values()].flat().length;
    const statuses = await sendRaw(gw.gateway.port, [truncated, damaged, noPixels]);
    expect(statuses).toEqual([STATUS_CANNOT_UNDERSTAND, STATUS_CANNOT_UNDERSTAND, STATUS_CANNOT_UNDERSTAND]);
    expect([...gw.spooled().values()].flat()).toHaveLength(before);
    expect(readdirSync(join(gw.stateDir, 'incoming'))).toEqual([]);
    // The same file whole is taken.
    expect(await sendRaw(gw.gateway.port, [whole]), JSON.stringify(gw.log.lines.slice(-6))).toEqual([0]);
    expect([...gw.spooled().values()].flat()).toHaveLength(before + 1);
  });
});

describe('runs', () => {
  it('the same instance twice is one instance; two patients in one association are two runs', async () => {
    const dir = scratch('runs-');
    const a = await variant(dir, 'a', {
      '(0010,0010)': 'ALPHA^ONE',
      '(0010,0020)': 'PID-A',
      '(0020,000d)': '1.2.826.0.1.3680043.9.7133.2.1',
      '(0008,0018)': '1.2.826.0.1.3680043.9.7133.2.1.1',
    });
    const b = await variant(dir, 'b', {
      '(0010,0010)': 'BETA^TWO',
      '(0010,0020)': 'PID-B',
      '(0020,000d)': '1.2.826.0.1.3680043.9.7133.2.2',
      '(0008,0018)': '1.2.826.0.1.3680043.9.7133.2.2.1',
    });
    const stateDir = scratch('runs-state-');
    const log = memoryLog();
    // Quiet after 1 s; the API does not answer, so the runs stay in their upload phase.
    const gateway = await startGateway({
      port: 0,
      aeTitle: AE,
      allow: [{ aeTitle: 'PACS' }],
      destination: { aeTitle: 'DEST', host: '127.0.0.1', port: 9 },
      api: { api: 'http://127.0.0.1:9', key: 'unused' },
      stateDir,
      quietSeconds: 1,
      retrySeconds: 60,
      log,
    });
    try {
      const sent = await storescu(gateway.port, 'PACS', [a, b, a]);
      expect(sent.code, sent.output).toBe(0);
      await expect.poll(() => readdirSync(join(stateDir, 'runs')).length, { timeout: 15_000 }).toBe(2);
      const state = await GatewayState.open(stateDir);
      const runs = await state.runs();
      const byStudy = new Map(
        runs.map((r) => [r.studyKey, readdirSync(join(state.runDir(r.runId), 'source'))]),
      );
      expect(byStudy.get(state.keyOf('study', '1.2.826.0.1.3680043.9.7133.2.1'))).toEqual([
        `${state.keyOf('instance', '1.2.826.0.1.3680043.9.7133.2.1.1')}.dcm`,
      ]);
      expect(byStudy.get(state.keyOf('study', '1.2.826.0.1.3680043.9.7133.2.2'))).toEqual([
        `${state.keyOf('instance', '1.2.826.0.1.3680043.9.7133.2.2.1')}.dcm`,
      ]);
      expect(log.lines.filter((l) => l.message === 'study complete: run started')).toHaveLength(2);
    } finally {
      await gateway.stop();
    }
  });
});
