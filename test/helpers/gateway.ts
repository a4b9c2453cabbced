/**
 * Set-up the gateway's tests share: a log that keeps its lines, DCMTK's tools (dcmodify to make a
 * study of a fixture, storescu to send it, dciodvfy to judge what came back), run as processes.
 */
import { execFile, spawnSync } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import type { GatewayLog } from '../../gateway/log.js';

const exec = promisify(execFile);

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The DICOM fixtures (test/fixtures/dicom). */
export const DICOM_FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'dicom');

/** The gateway's AE title in the tests. */
export const GATEWAY_AE = 'COVIDCT';

/** A line a {@link memoryLog} kept. */
export interface LoggedLine {
  readonly level: string;
  readonly message: string;
  readonly attrs: Record<string, unknown>;
}

/** A log that keeps its lines. */
export function memoryLog(): GatewayLog & { lines: LoggedLine[] } {
  const lines: LoggedLine[] = [];
  const add =
    (level: string) =>
    (message: string, attrs: Record<string, unknown> = {}) =>
      void lines.push({ level, message, attrs });
  return { lines, info: add('info'), warn: add('warn'), error: add('error') };
}

/** Run a DCMTK tool; resolves with its exit code and output (never rejects on a non-zero exit). */
export async function dcmtk(
  tool: string,
  args: readonly string[],
): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await exec(tool, [...args], { timeout: 60_000 });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

/** storescu from `callingAe` to the gateway's AE title on loopback `port`, `extra` options before the address. */
export function storescu(
  port: number,
  callingAe: string,
  files: readonly string[],
  extra: readonly string[] = [],
): Promise<{ code: number; output: string }> {
  return dcmtk('storescu', [
    '-aet',
    callingAe,
    '-aec',
    GATEWAY_AE,
    ...extra,
    '127.0.0.1',
    String(port),
    ...files,
  ]);
}

/**
 * A copy of a fixture (CT_small unless `from` says another) as `dir/name.dcm` with the given
 * values (`(gggg,eeee)` → value; dcmodify -i inserts or replaces, and updates the file meta).
 */
export async function variant(
  dir: string,
  name: string,
  values: Readonly<Record<string, string>>,
  from = 'CT_small.dcm',
): Promise<string> {
  const path = join(dir, `${name}.dcm`);
  copyFileSync(join(DICOM_FIXTURES, from), path);
  const args = Object.entries(values).flatMap(([tag, value]) => ['-i', `${tag}=${value}`]);
  const out = await dcmtk('dcmodify', ['-nb', ...args, path]);
  expect(out.code, out.output).toBe(0);
  return path;
}

/** dciodvfy's error lines for `file` (its warnings are not failures). */
export function dciodvfyErrors(file: string): string[] {
  const res = spawnSync('dciodvfy', [file], { encoding: 'utf8' });
  expect(res.error).toBeUndefined();
  return `${res.stdout}\n${res.stderr}`.split('\n').filter((l) => l.startsWith('Error'));
}
