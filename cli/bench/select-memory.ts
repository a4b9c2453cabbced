/**
 * `covidct bench memory`: the select Lambda's peak memory for one series of N slices (600 by
 * default, a long chest CT), measured in a fresh Node process that runs only the handler (as the
 * Lambda runtime does) against the local servers, the study uploaded through the local API first;
 * and the memory setting derived from it (see {@link recommendMemoryMb}).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { writePhantomSeries } from '../../core/phantom/series.js';
import { type LocalStack, startLocalStack } from '../../local/stack.js';
import { getStudy, isFinished, uploadStudy } from '../../pipeline/api-client.js';
import { quietPowertools, repoRoot, round } from './common.js';
import type { SelectChildReport } from './select-child.js';

/** What `bench memory --json` prints. */
export interface BenchMemoryResult {
  readonly slices: number;
  readonly selected: number;
  /** Peak RSS of the select process over the invocation, MiB. */
  readonly peakRssMiB: number;
  /** RSS of a bare Node process before the handler loaded, MiB. */
  readonly startRssMiB: number;
  readonly selectMs: number;
  /** The Lambda memory setting derived from the peak, MB. */
  readonly recommendedMemoryMb: number;
  readonly derivation: string;
}

/** Headroom over the measured peak: larger DICOM headers, GC timing, and the runtime's own share. */
export const MEMORY_HEADROOM = 1.5;

/**
 * Lambda memory from a measured peak RSS: peak × {@link MEMORY_HEADROOM}, rounded up to a multiple of
 * 128 MB, at least 256 MB.
 */
export function recommendMemoryMb(peakRssMiB: number): number {
  return Math.max(256, Math.ceil((peakRssMiB * MEMORY_HEADROOM) / 128) * 128);
}

/** Run the built select child on one event; resolves to its report. */
async function runSelectChild(
  event: SQSEvent,
  env: Readonly<Record<string, string>>,
): Promise<SelectChildReport> {
  const script = join(repoRoot(), 'dist', 'cli', 'bench', 'select-child.js');
  const dir = await mkdtemp(join(tmpdir(), 'covidct-select-child-'));
  const out = join(dir, 'report.json');
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(process.execPath, [script, out], {
        env: { ...process.env, ...env, POWERTOOLS_LOG_LEVEL: 'ERROR', POWERTOOLS_METRICS_DISABLED: 'true' },
        stdio: ['pipe', 'ignore', 'inherit'],
      });
      child.on('error', reject);
      child.on('close', resolve);
      child.stdin.end(JSON.stringify(event));
    });
    if (code !== 0) throw new Error(`${script} exited ${code} (is dist/ built? npm run build)`);
    return JSON.parse(await readFile(out, 'utf8')) as SelectChildReport;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Measure (see the module comment). */
export async function benchSelectMemory(
  options: { readonly slices?: number } = {},
): Promise<BenchMemoryResult> {
  const slices = options.slices ?? 600;
  const work = await mkdtemp(join(tmpdir(), 'covidct-bench-memory-'));
  const hospital = { hospital: 'bench', apiKey: randomBytes(18).toString('base64url') };
  let stack: LocalStack | undefined;
  const reports: SelectChildReport[] = [];
  const restore = quietPowertools();
  try {
    await writePhantomSeries(join(work, 'study', 'SR_2'), {
      covid: false,
      seed: 7001,
      slices,
      format: 'dicom',
      force: false,
    });
    let env: Readonly<Record<string, string>> = {};
    // The select "Lambda": every ingest event goes to a fresh child process running the real handler.
    const select = async (event: SQSEvent): Promise<SQSBatchResponse> => {
      const report = await runSelectChild(event, env);
      reports.push(report);
      return { batchItemFailures: [] };
    };
    stack = await startLocalStack({
      hospitals: [hospital],
      handlers: { select },
      worker: false,
      pollWaitSeconds: 1,
      onError: () => {},
    });
    env = stack.env;
    const target = { api: stack.apiUrl, key: hospital.apiKey };
    const upload = await uploadStudy({ ...target, path: join(work, 'study') });
    const deadline = Date.now() + 300_000;
    let status = await getStudy(target, upload.studyId);
    // Selection is done once the study is CLASSIFYING (no worker runs: it stays there).
    while (status.status !== 'CLASSIFYING' && !isFinished(status)) {
      if (Date.now() > deadline) throw new Error(`selection did not finish (status ${status.status})`);
      await new Promise((r) => setTimeout(r, 200));
      status = await getStudy(target, upload.studyId);
    }
    if (status.status !== 'CLASSIFYING') {
      throw new Error(`the study ended ${status.status}${status.reason ? `: ${status.reason}` : ''}`);
    }
    // The study turns CLASSIFYING inside the handler, a moment before the child reports.
    while (reports.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const report = reports[0];
    if (report === undefined) throw new Error('the select child reported nothing');
    const peakRssMiB = report.maxRssBytes / 2 ** 20;
    const recommended = recommendMemoryMb(peakRssMiB);
    return {
      slices,
      selected: (status.selectedCount as number | undefined) ?? 0,
      peakRssMiB: round(peakRssMiB),
      startRssMiB: round(report.rssStartBytes / 2 ** 20),
      selectMs: round(report.ms),
      recommendedMemoryMb: recommended,
      derivation: `peak RSS ${peakRssMiB.toFixed(0)} MiB × ${MEMORY_HEADROOM} headroom = ${(peakRssMiB * MEMORY_HEADROOM).toFixed(0)} MB, rounded up to a multiple of 128 MB (at least 256): ${recommended} MB`,
    };
  } finally {
    await stack?.stop();
    await rm(work, { recursive: true, force: true });
    restore();
  }
}
