/**
 * `covidct bench gateway`, part 2: the time from the last instance to the SR in the PACS. The real
 * series goes through the built gateway, the local stack (startLocalStack) and back into a
 * `storescp` destination; the time from storescu's exit to the SR file is split by the gateway's
 * JSON log into quiet period, gateway work and cloud time, the cloud time by the study's timings.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type LocalStack, startLocalStack } from '../../local/stack.js';
import { resolveModelDir } from '../../models/default-model.js';
import { getStudy } from '../../pipeline/api-client.js';
import { quietPowertools, round } from './common.js';
import {
  countFiles,
  GATEWAY_AE,
  type Receiver,
  SAMPLE_SERIES,
  sleep,
  startGatewayProcess,
  startStoreScpProcess,
  storescu,
} from './dicom-processes.js';
import { waitHealthy } from './pipeline.js';

/** Where the time from the last instance to the SR went, ms; the stages add up to `totalMs`. */
export interface EndToEndRun {
  readonly decision: string | null;
  /** Result objects the gateway delivered (1 SR + the overlays). */
  readonly objects: number;
  /** Last instance acknowledged (storescu exits) → SR file at the destination. */
  readonly totalMs: number;
  readonly stages: {
    /** Last instance → `study complete: run started` (the quiet period and the gateway's tick). */
    readonly quietMs: number;
    /** → `study sent`: de-identify and upload through the API (gateway). */
    readonly uploadMs: number;
    /** → `result received`: the cloud's work and the gateway's polling. */
    readonly cloudMs: number;
    /** → `results built`: overlays fetched, SR and Secondary Captures built and written (gateway). */
    readonly buildMs: number;
    /** → the SR at the destination (gateway: C-STORE, the SR goes first). */
    readonly deliverMs: number;
  };
  /** The cloud's time from the study's timings. */
  readonly cloud: {
    /** `study sent` → the decision (completedAt): selection, classification, aggregation. */
    readonly processingMs: number;
    /** The decision → `result received`: the gateway's poll interval and the report's fetch. */
    readonly pollLagMs: number;
  };
  /** `results built` → `result delivered` (every object stored at the destination). */
  readonly allDeliveredMs: number;
  /** Shares of totalMs: quiet, gateway work (upload + build + deliver), cloud. */
  readonly share: { readonly quiet: number; readonly gateway: number; readonly cloud: number };
  /** Gateway work over the time after the quiet period. */
  readonly gatewayShareAfterQuiet: number;
}

/** The end-to-end figures. */
export interface EndToEndFigures {
  readonly series: string;
  readonly instances: number;
  readonly quietSeconds: number;
  /** How often the gateway asks the API about a study (its default). */
  readonly pollSeconds: number;
  readonly model: string;
  readonly runs: readonly EndToEndRun[];
}

/** gateway.ts's default poll interval (not a command-line option). */
const GATEWAY_POLL_SECONDS = 2;

/** Time the real series `real` end to end, `options.runs` times (see the module comment). */
export async function benchEndToEnd(
  main: string,
  real: string,
  dir: string,
  options: { runs: number; quietSeconds: number; modelDir?: string },
): Promise<EndToEndFigures> {
  const files = (await readdir(real)).sort().map((n) => join(real, n));
  const pacsDir = join(dir, 'pacs');
  await mkdir(pacsDir, { recursive: true });
  const hospital = { hospital: 'bench', apiKey: randomBytes(18).toString('base64url') };
  const restore = quietPowertools();
  let stack: LocalStack | undefined;
  let pacs: Receiver | undefined;
  let gateway: Receiver | undefined;
  try {
    stack = await startLocalStack({
      hospitals: [hospital],
      uploadModel: { dir: resolveModelDir(options.modelDir), name: 'default', version: '1' },
      pollWaitSeconds: 1,
      onWorkerLine: () => {},
      onError: () => {},
    });
    await waitHealthy(stack);
    pacs = await startStoreScpProcess(pacsDir);
    gateway = await startGatewayProcess(
      main,
      join(dir, 'state'),
      { url: stack.apiUrl, key: hospital.apiKey },
      pacs.port,
      options.quietSeconds,
    );
    const runs: EndToEndRun[] = [];
    for (let i = 0; i < options.runs; i++) {
      const srBefore = await countFiles(pacsDir, (n) => n.startsWith('SR'));
      const firstLog = gateway.logs.length;
      await storescu(files, GATEWAY_AE, gateway.port);
      const lastAck = Date.now();
      // The SR at the destination: storescp names files by modality (SR.<uid>).
      let srAt: number | undefined;
      const deadline = lastAck + 900_000;
      while (srAt === undefined) {
        if ((await countFiles(pacsDir, (n) => n.startsWith('SR'))) > srBefore) srAt = Date.now();
        else if (Date.now() > deadline) throw new Error('no SR reached the destination within 15 min');
        else await sleep(20);
      }
      const logs = gateway.logs;
      const find = async (message: string) => {
        const limit = Date.now() + 120_000;
        for (;;) {
          const entry = logs.slice(firstLog).find((l) => l.message === message);
          if (entry) return entry;
          if (Date.now() > limit) throw new Error(`the gateway did not log '${message}'`);
          await sleep(20);
        }
      };
      const complete = await find('study complete: run started');
      const sent = await find('study sent');
      const received = await find('result received');
      const built = await find('results built');
      const delivered = await find('result delivered');
      const status = await getStudy({ api: stack.apiUrl, key: hospital.apiKey }, String(sent.studyId));
      const completedAt = Date.parse(
        String((status.timings as { completedAt?: string } | undefined)?.completedAt ?? ''),
      );
      const stages = {
        quietMs: complete.at - lastAck,
        uploadMs: sent.at - complete.at,
        cloudMs: received.at - sent.at,
        buildMs: built.at - received.at,
        deliverMs: srAt - built.at,
      };
      const totalMs = srAt - lastAck;
      const gatewayMs = stages.uploadMs + stages.buildMs + stages.deliverMs;
      runs.push({
        decision: status.decision ?? null,
        objects: Number(delivered.objects ?? 0),
        totalMs: round(totalMs),
        stages: {
          quietMs: round(stages.quietMs),
          uploadMs: round(stages.uploadMs),
          cloudMs: round(stages.cloudMs),
          buildMs: round(stages.buildMs),
          deliverMs: round(stages.deliverMs),
        },
        cloud: {
          processingMs: round((Number.isFinite(completedAt) ? completedAt : received.at) - sent.at),
          pollLagMs: round(received.at - (Number.isFinite(completedAt) ? completedAt : received.at)),
        },
        allDeliveredMs: round(delivered.at - built.at),
        share: {
          quiet: round(stages.quietMs / totalMs),
          gateway: round(gatewayMs / totalMs),
          cloud: round(stages.cloudMs / totalMs),
        },
        gatewayShareAfterQuiet: round(gatewayMs / (totalMs - stages.quietMs)),
      });
    }
    return {
      series: `Lung-PET-CT-Dx A0002 ${SAMPLE_SERIES} (${files.length} instances)`,
      instances: files.length,
      quietSeconds: options.quietSeconds,
      pollSeconds: GATEWAY_POLL_SECONDS,
      model: stack.model ?? 'default/1',
      runs,
    };
  } finally {
    await gateway?.stop();
    await pacs?.stop();
    await stack?.stop();
    restore();
  }
}
