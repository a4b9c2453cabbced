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
 *    quiet period, gateway work and cloud time, the cloud time split by the study's timings.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { median } from '../../core/metrics.js';
import { freePort } from '../../local/ports.js';
import { type LocalStack, startLocalStack } from '../../local/stack.js';
import { resolveModelDir } from '../../models/default-model.js';
import { getStudy } from '../../pipeline/api-client.js';
import { quietPowertools, repoRoot, round } from './common.js';
import { waitHealthy } from './pipeline.js';

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

const SERIES = 'B40f';
const BENCH_AE = 'BENCH';
const GATEWAY_AE = 'GATEWAY';
const PACS_AE = 'PACS';
/** gateway.ts's default poll interval (not a command-line option). */
const GATEWAY_POLL_SECONDS = 2;

/**
 * DCMTK as Debian builds it leaves Nagle's algorithm on unless `TCP_NODELAY=1`: storescp's C-STORE
 * response then waits for the sender's delayed ACK, about 40 ms per instance (30 instances took
 * 1.4 s with or without writing them, 0.12 s with the variable). The DCMTK tools run with it, except
 * the storescp measured "as installed".
 */
const NODELAY_ENV: NodeJS.ProcessEnv = { ...process.env, TCP_NODELAY: '1' };
const DCMTK_DEFAULT_ENV: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([name]) => name !== 'TCP_NODELAY'),
);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

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
    await gunzipSeries(join(repoRoot(), 'samples', 'lung-pet-ct-dx-A0002', SERIES), real);
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

/** The `.dcm.gz` slices of `from`, gunzipped into `to`. */
async function gunzipSeries(from: string, to: string): Promise<string[]> {
  await mkdir(to, { recursive: true });
  const out: string[] = [];
  for (const name of (await readdir(from)).filter((n) => n.endsWith('.dcm.gz')).sort()) {
    const target = join(to, name.slice(0, -3));
    await writeFile(target, gunzipSync(await readFile(join(from, name))));
    out.push(target);
  }
  return out;
}

/**
 * `count` files: the originals, then copies with new SOP Instance UIDs (`dcmodify -gin`, file meta
 * updated too), same study and series.
 */
async function replicate(real: string, to: string, count: number): Promise<string[]> {
  await mkdir(to, { recursive: true });
  const originals = (await readdir(real)).sort().map((n) => join(real, n));
  const files: string[] = [];
  const copies: string[] = [];
  for (let i = 0; i < count; i++) {
    const source = originals[i % originals.length]!;
    const target = join(to, `${String(i).padStart(5, '0')}.dcm`);
    await copyFile(source, target);
    files.push(target);
    if (i >= originals.length) copies.push(target);
  }
  if (copies.length > 0) await tool('dcmodify', ['-nb', '-gin', ...copies], 120_000);
  return files;
}

/** Run a DCMTK tool; resolves with its wall time in ms, rejects with its last stderr line. */
function tool(
  command: string,
  args: readonly string[],
  timeoutMs: number,
  env: NodeJS.ProcessEnv = NODELAY_ENV,
): Promise<number> {
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${command} (apt-get install dcmtk): ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(performance.now() - t);
      else {
        const last = err.trim().split('\n').filter(Boolean).pop() ?? '';
        reject(new Error(`${command} failed (${signal ?? `exit ${code}`}): ${last}`));
      }
    });
  });
}

/** A receiver process (the gateway or storescp) and what it printed. */
interface Receiver {
  readonly child: ChildProcess;
  readonly port: number;
  /** The gateway's JSON log lines, parsed. */
  readonly logs: { message: string; at: number; [key: string]: unknown }[];
  stop(): Promise<void>;
}

function startProcess(command: string, args: readonly string[], env?: NodeJS.ProcessEnv) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  const logs: Receiver['logs'] = [];
  let stderr = '';
  let pending = '';
  child.stdout!.on('data', (d: Buffer) => {
    pending += d.toString();
    let nl = pending.indexOf('\n');
    while (nl >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      nl = pending.indexOf('\n');
      try {
        const entry = JSON.parse(line) as { message?: string; timestamp?: string };
        if (typeof entry.message === 'string' && typeof entry.timestamp === 'string')
          logs.push({ ...entry, message: entry.message, at: Date.parse(entry.timestamp) });
      } catch {
        // not a log line
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return {
    child,
    logs,
    stderr: () => stderr,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Start a receiver and wait until it answers C-ECHO. */
async function startReceiver(
  name: string,
  command: string,
  args: (port: number) => readonly string[],
  aeTitle: string,
  env?: NodeJS.ProcessEnv,
): Promise<Receiver> {
  const port = await freePort();
  const p = startProcess(command, args(port), env);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (p.child.exitCode !== null || p.child.signalCode !== null) {
      const last = p.stderr().trim().split('\n').pop() ?? '';
      throw new Error(`${name} exited at start (${p.child.exitCode ?? p.child.signalCode}): ${last}`);
    }
    const ok = await tool('echoscu', ['-aet', BENCH_AE, '-aec', aeTitle, '127.0.0.1', String(port)], 10_000)
      .then(() => true)
      .catch(() => false);
    if (ok) break;
    if (Date.now() > deadline) {
      await p.stop();
      throw new Error(`${name} did not answer C-ECHO on port ${port} within 60 s`);
    }
    await sleep(100);
  }
  return { child: p.child, port, logs: p.logs, stop: p.stop };
}

/** `covidct gateway` from dist/ with its state in `state`. */
function startGatewayProcess(
  main: string,
  state: string,
  api: { url: string; key: string },
  destinationPort: number,
  quietSeconds: number,
): Promise<Receiver> {
  return startReceiver(
    'covidct gateway',
    process.execPath,
    (port) => [
      main,
      'gateway',
      '--port',
      String(port),
      '--ae-title',
      GATEWAY_AE,
      '--api',
      api.url,
      '--destination',
      `${PACS_AE}@127.0.0.1:${destinationPort}`,
      '--allow-caller',
      `${BENCH_AE}@127.0.0.1`,
      '--quiet-seconds',
      String(quietSeconds),
      '--state',
      state,
    ],
    GATEWAY_AE,
    {
      ...process.env,
      COVIDCT_API_KEY: api.key,
      POWERTOOLS_LOG_LEVEL: 'INFO',
      POWERTOOLS_DEV: 'false',
    },
  );
}

function startStoreScpProcess(out: string, env: NodeJS.ProcessEnv = NODELAY_ENV): Promise<Receiver> {
  return startReceiver(
    'storescp',
    'storescp',
    (port) => ['-aet', PACS_AE, '+xa', '-od', out, String(port)],
    PACS_AE,
    env,
  );
}

/** storescu of `files` to a receiver: ms from start to exit (every instance acknowledged). */
function storescu(files: readonly string[], aeTitle: string, port: number): Promise<number> {
  return tool('storescu', ['-aet', BENCH_AE, '-aec', aeTitle, '127.0.0.1', String(port), ...files], 600_000);
}

/** Regular files under `dir`, recursively. */
async function countFiles(dir: string, filter: (name: string) => boolean = () => true): Promise<number> {
  let n = 0;
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (entry.isDirectory()) n += await countFiles(join(dir, entry.name), filter);
    else if (entry.isFile() && filter(entry.name)) n++;
  }
  return n;
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

async function benchEndToEnd(
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
      series: `Lung-PET-CT-Dx A0002 ${SERIES} (${files.length} instances)`,
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
