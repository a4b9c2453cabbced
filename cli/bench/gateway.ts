/**
 * `covidct bench gateway`: the DICOM gateway as a PACS sees it.
 *
 * 1. Receive rate: DCMTK's `storescu` sends one series (the 30 real slices of the bundled sample,
 *    replicated with new SOP Instance UIDs by `dcmodify -gin` to `instances`) to the gateway
 *    (`covidct gateway`, a child process from dist/: spooled, fsynced, moved into its study and the
 *    folder synced before each C-STORE is answered) and to DCMTK's `storescp -od DIR` (writes each
 *    file, no fsync) with Nagle's algorithm off and as installed (see {@link NODELAY_ENV}), in
 *    rotating order, each receiver fresh with an empty folder per repetition. A rate is instances
 *    over storescu's wall time (start to exit: every instance acknowledged).
 * 2. Last instance → SR in the PACS: the real series through the gateway, the local stack
 *    (startLocalStack, default model) and back into a `storescp` destination; the time from
 *    storescu's exit (the last instance acknowledged) to the SR file at the destination, split by
 *    the gateway's JSON log (study complete → study sent → result received → results built) into
 *    quiet period, gateway work and cloud time, the cloud time split by the study's timings
 *    (gateway-end-to-end.ts).
 */

import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median } from '../../core/metrics.js';
import { repoRoot, round } from './common.js';
import {
  countFiles,
  DCMTK_DEFAULT_ENV,
  GATEWAY_AE,
  gunzipSeries,
  NODELAY_ENV,
  PACS_AE,
  replicate,
  SAMPLE_SERIES,
  startGatewayProcess,
  startStoreScpProcess,
  storescu,
} from './dicom-processes.js';
import { benchEndToEnd, type EndToEndFigures } from './gateway-end-to-end.js';

/** The issue's floor for the gateway's receive rate, as a fraction of storescp's. */
export const REQUIRED_RECEIVE_RATIO = 0.5;

/** The receivers the receive bench times. */
export type ReceiverName = 'gateway' | 'storescp' | 'storescpDefault';

/** One repetition of the receive bench: every receiver, one after the other. */
export interface ReceiveRepetition {
  /** The order they ran in (it rotates between repetitions). */
  readonly order: readonly ReceiverName[];
  /** storescu's wall time per receiver, s. */
  readonly seconds: Readonly<Record<ReceiverName, number>>;
  readonly instancesPerSecond: Readonly<Record<ReceiverName, number>>;
}

/** One receiver's figures: instances over the median of its repetitions' seconds. */
export interface ReceiverFigures {
  readonly instancesPerSecond: number;
  readonly medianSeconds: number;
  /** What it is. */
  readonly description: string;
}

/** The receive rate figures. */
export interface ReceiveFigures {
  readonly instances: number;
  /** Bytes of the series as storescu reads them (uncompressed Part 10 files). */
  readonly megabytes: number;
  readonly repetitions: number;
  /** Where the receivers wrote (the file system measured). */
  readonly dir: string;
  readonly gateway: ReceiverFigures;
  /** The baseline: storescp -od, Nagle off (TCP_NODELAY=1). */
  readonly storescp: ReceiverFigures;
  /** storescp -od as installed (Nagle on: ~40 ms per instance waiting for a delayed ACK). */
  readonly storescpDefault: ReceiverFigures;
  /** gateway.instancesPerSecond / storescp.instancesPerSecond: the issue's figure. */
  readonly ratio: number;
  /** gateway.instancesPerSecond / storescpDefault.instancesPerSecond. */
  readonly ratioToDefault: number;
  readonly required: number;
  readonly meetsRequirement: boolean;
  readonly perRepetition: readonly ReceiveRepetition[];
}

/** What `bench gateway --json` prints. */
export interface BenchGatewayResult {
  readonly receive: ReceiveFigures;
  /** Null with `endToEnd: false`. */
  readonly endToEnd: EndToEndFigures | null;
}

/** Options of {@link benchGateway}. */
export interface BenchGatewayOptions {
  /** Series length for the receive rate (the 30 real slices, replicated). @default 120 */
  readonly instances?: number;
  /** Timed repetitions per receiver, after one untimed warm-up of each. @default 5 */
  readonly repetitions?: number;
  /** Run part 2. @default true */
  readonly endToEnd?: boolean;
  /** Runs of the real series through gateway and pipeline. @default 1 */
  readonly endToEndRuns?: number;
  /** The gateway's --quiet-seconds in part 2. @default 2 */
  readonly quietSeconds?: number;
  /** Model folder of part 2. @default the shipped default model */
  readonly modelDir?: string;
  /** Parent of the working folder (its file system is the one measured). @default the OS temp dir */
  readonly workParent?: string;
}

/** Measure the gateway (see the module comment). */
export async function benchGateway(options: BenchGatewayOptions = {}): Promise<BenchGatewayResult> {
  const instances = options.instances ?? 120;
  const repetitions = options.repetitions ?? 5;
  const main = join(repoRoot(), 'dist', 'cli', 'main.js');
  if (!existsSync(main))
    throw new Error(`${main} not found: the bench runs the built gateway (npm run build)`);
  const work = await mkdtemp(join(options.workParent ?? tmpdir(), 'covidct-bench-gateway-'));
  try {
    const real = join(work, 'real');
    await gunzipSeries(join(repoRoot(), 'samples', 'lung-pet-ct-dx-A0002', SAMPLE_SERIES), real);
    const series = await replicate(real, join(work, 'series'), instances);
    const receive = await benchReceive(main, series, join(work, 'rx'), repetitions);
    const endToEnd =
      options.endToEnd === false
        ? null
        : await benchEndToEnd(main, real, join(work, 'e2e'), {
            runs: options.endToEndRuns ?? 1,
            quietSeconds: options.quietSeconds ?? 2,
            ...(options.modelDir === undefined ? {} : { modelDir: options.modelDir }),
          });
    return { receive, endToEnd };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

const RECEIVERS: readonly ReceiverName[] = ['gateway', 'storescp', 'storescpDefault'];

const DESCRIPTIONS: Record<ReceiverName, string> = {
  gateway:
    'covidct gateway (dist/): each instance streamed to a file, fsynced, moved into its study, folder fsynced, then answered',
  storescp: 'DCMTK storescp -od DIR +xa, TCP_NODELAY=1: parses and writes each file, no fsync',
  storescpDefault: 'DCMTK storescp -od DIR +xa as installed (Nagle on)',
};

async function benchReceive(
  main: string,
  files: readonly string[],
  dir: string,
  repetitions: number,
): Promise<ReceiveFigures> {
  let bytes = 0;
  for (const f of files) bytes += (await stat(f)).size;
  // Port 9 (discard) refuses connections: no run could upload; none starts within a day anyway.
  const api = { url: 'http://127.0.0.1:9', key: 'bench-no-api' };
  let counter = 0;
  const once = async (which: ReceiverName): Promise<number> => {
    const where = join(dir, `${which}-${counter++}`);
    await mkdir(where, { recursive: true });
    const receiver =
      which === 'gateway'
        ? await startGatewayProcess(main, where, api, 9, 86_400)
        : await startStoreScpProcess(where, which === 'storescp' ? NODELAY_ENV : DCMTK_DEFAULT_ENV);
    try {
      const ms = await storescu(files, which === 'gateway' ? GATEWAY_AE : PACS_AE, receiver.port);
      // Every instance must be there, or the rate means nothing.
      const stored =
        which === 'gateway'
          ? await countFiles(join(where, 'studies'), (n) => n.endsWith('.dcm'))
          : await countFiles(where);
      if (stored !== files.length) {
        throw new Error(`${which} holds ${stored} of the ${files.length} instances storescu sent`);
      }
      return ms / 1000;
    } finally {
      await receiver.stop();
      await rm(where, { recursive: true, force: true });
    }
  };
  // Warm-up: the page cache holds the series, each program's code is loaded once.
  for (const which of RECEIVERS) await once(which);
  const perRepetition: ReceiveRepetition[] = [];
  const raw: Record<ReceiverName, number[]> = { gateway: [], storescp: [], storescpDefault: [] };
  for (let i = 0; i < repetitions; i++) {
    const order = RECEIVERS.map((_, k) => RECEIVERS[(i + k) % RECEIVERS.length]!);
    const seconds = {} as Record<ReceiverName, number>;
    for (const which of order) {
      seconds[which] = await once(which);
      raw[which].push(seconds[which]);
    }
    const pick = (f: (s: number) => number) =>
      Object.fromEntries(RECEIVERS.map((r) => [r, round(f(seconds[r]))])) as Record<ReceiverName, number>;
    perRepetition.push({
      order,
      seconds: pick((x) => x),
      instancesPerSecond: pick((x) => files.length / x),
    });
  }
  // Rates from the unrounded medians; the ratios from the rates as printed.
  const figures = (which: ReceiverName): ReceiverFigures => {
    const m = median(raw[which]);
    return {
      instancesPerSecond: round(files.length / m),
      medianSeconds: round(m),
      description: DESCRIPTIONS[which],
    };
  };
  const gateway = figures('gateway');
  const storescp = figures('storescp');
  const storescpDefault = figures('storescpDefault');
  const ratio = round(gateway.instancesPerSecond / storescp.instancesPerSecond);
  return {
    instances: files.length,
    megabytes: round(bytes / 1e6),
    repetitions,
    dir,
    gateway,
    storescp,
    storescpDefault,
    ratio,
    ratioToDefault: round(gateway.instancesPerSecond / storescpDefault.instancesPerSecond),
    required: REQUIRED_RECEIVE_RATIO,
    meetsRequirement: ratio >= REQUIRED_RECEIVE_RATIO,
    perRepetition,
  };
}

/** A few lines for the terminal. */
export function formatGateway(r: BenchGatewayResult): string {
  const rx = r.receive;
  const lines = [
    `receive ${rx.instances} instances (${rx.megabytes} MB) from storescu, median of ${rx.repetitions}, in ${rx.dir}:`,
    `  gateway ${rx.gateway.instancesPerSecond}/s, storescp ${rx.storescp.instancesPerSecond}/s (as installed: ${rx.storescpDefault.instancesPerSecond}/s)`,
    `  ratio ${rx.ratio} (required ≥ ${rx.required}${rx.meetsRequirement ? '' : ': NOT MET'}; ${rx.ratioToDefault} against storescp as installed)`,
    ...rx.perRepetition.map(
      (p, i) => `  #${i + 1}: ${p.order.map((name) => `${name} ${p.seconds[name]} s`).join(', ')}`,
    ),
  ];
  if (r.endToEnd) {
    const e = r.endToEnd;
    for (const run of e.runs) {
      const s = run.stages;
      const pct = (n: number) => `${Math.round(n * 100)}%`;
      lines.push(
        `${e.series}, quiet ${e.quietSeconds} s: last instance → SR ${(run.totalMs / 1000).toFixed(1)} s = quiet ${s.quietMs} + upload ${s.uploadMs} + cloud ${s.cloudMs} (decision ${run.cloud.processingMs}, poll lag ${run.cloud.pollLagMs}) + build ${s.buildMs} + deliver ${s.deliverMs} ms; gateway ${pct(run.share.gateway)} (${pct(run.gatewayShareAfterQuiet)} after the quiet period)`,
      );
    }
  }
  return lines.join('\n');
}
