/**
 * `covidct gateway`'s command line: the API key never on the command line (environment or an
 * owner-only key file), and every malformed option refused in one line naming it, before anything
 * listens. Also the parsers of gateway/dimse.ts and the gateway's retry rules (the state folder:
 * test/gateway-state.test.ts).
 */
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isAllowed, parseAllowedCaller, parseDestination } from '../gateway/dimse.js';
import { retryDelay } from '../gateway/gateway.js';
import { refusedForGood } from '../gateway/send.js';
import { ApiError } from '../pipeline/api-client.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-gateway-cli-');

const BASE = [
  'gateway',
  '--port',
  '0',
  '--ae-title',
  'COVIDCT',
  '--api',
  'http://127.0.0.1:9',
  '--destination',
  'PACS@127.0.0.1:4242',
  '--allow-caller',
  'PACS',
];

/** A run that must fail at once: exit 1, one line on stderr, no stack trace. */
function refused(args: readonly string[], env: NodeJS.ProcessEnv = {}): string {
  const run = runCli(['gateway', ...args], { COVIDCT_API_KEY: '', ...env });
  expect(run.code).toBe(1);
  const lines = run.stderr.trim().split('\n');
  expect(lines, run.stderr).toHaveLength(1);
  expect(run.stderr).not.toMatch(/\n\s+at /);
  return lines[0]!;
}

describe('covidct gateway refuses bad settings in one line', () => {
  const state = join(work, 'state');
  const rest = (...more: string[]) => [...BASE.slice(1), '--state', state, ...more];

  it('without an API key', () => {
    expect(refused(rest())).toMatch(/COVIDCT_API_KEY: is not set; set it or give --key-file FILE/);
  });

  it('with a key file other users can read', () => {
    const keyFile = join(work, 'key-open');
    writeFileSync(keyFile, 'secret\n');
    chmodSync(keyFile, 0o644);
    expect(refused(rest('--key-file', keyFile))).toMatch(
      /key-open: is readable or writable by other users \(mode 0644\); chmod 600 it/,
    );
  });

  it('with an empty or missing key file', () => {
    const keyFile = join(work, 'key-empty');
    writeFileSync(keyFile, '\n', { mode: 0o600 });
    expect(refused(rest('--key-file', keyFile))).toMatch(/key-empty: is empty, expected the API key/);
    expect(refused(rest('--key-file', join(work, 'nope')))).toMatch(/nope/);
  });

  it('with a malformed destination, caller, AE title or number', () => {
    const env = { COVIDCT_API_KEY: 'k' };
    const args = (flag: string, value: string) => {
      const a = rest();
      a[a.indexOf(flag) + 1] = value;
      return a;
    };
    expect(refused(args('--destination', 'PACS@host'), env)).toMatch(
      /--destination: 'PACS@host': expected AE@HOST:PORT/,
    );
    expect(refused(args('--destination', 'PACS@host:70000'), env)).toMatch(/expected AE@HOST:PORT/);
    expect(refused(args('--allow-caller', 'A\\B'), env)).toMatch(/--allow-caller: 'A\\B' is not an AE title/);
    expect(refused(args('--ae-title', 'SEVENTEEN_CHARS_X'), env)).toMatch(
      /--ae-title: .* is not an AE title/,
    );
    expect(refused(args('--port', '-1'), env)).toMatch(/--port: '-1' is not a whole number from 0 to 65535/);
    expect(refused(rest('--quiet-seconds', '0'), env)).toMatch(/--quiet-seconds: '0' is not a whole number/);
    // Nothing was made for a run refused before it started.
    expect(existsSync(state)).toBe(false);
  });
});

describe('gateway address parsing', () => {
  it('reads AE, AE@HOST and AE@HOST:PORT', () => {
    expect(parseAllowedCaller('ORTHANC')).toEqual({ aeTitle: 'ORTHANC' });
    expect(parseAllowedCaller('ORTHANC@10.0.0.5')).toEqual({ aeTitle: 'ORTHANC', host: '10.0.0.5' });
    expect(parseDestination('PACS@pacs.hospital.example:104')).toEqual({
      aeTitle: 'PACS',
      host: 'pacs.hospital.example',
      port: 104,
    });
  });

  it('takes an IP address, not a host name, after AE@ (host names are not resolved, so would never match)', () => {
    expect(() => parseAllowedCaller('ORTHANC@pacs.example')).toThrow(/expected AE or AE@IP/);
    expect(parseAllowedCaller('ORTHANC@::1')).toEqual({ aeTitle: 'ORTHANC', host: '::1' });
  });

  it('matches callers by AE title and, when given, host (IPv4-mapped addresses too)', () => {
    const allow = [parseAllowedCaller('ORTHANC@10.0.0.5'), parseAllowedCaller('CT1')];
    expect(isAllowed(allow, 'ORTHANC', '::ffff:10.0.0.5')).toBe(true);
    expect(isAllowed(allow, 'ORTHANC', '10.0.0.6')).toBe(false);
    expect(isAllowed(allow, 'CT1', '192.168.1.1')).toBe(true);
    expect(isAllowed(allow, 'CT2', '10.0.0.5')).toBe(false);
  });
});

describe('gateway retries', () => {
  it('double the wait after each failure of a step, up to the maximum', () => {
    expect([0, 1, 2, 3, 6, 7, 100].map((n) => retryDelay(n, 1000, 60_000))).toEqual([
      1000, 2000, 4000, 8000, 60_000, 60_000, 60_000,
    ]);
  });

  it('stop for an API answer about the study itself, not for a key, a timeout or a throttle', () => {
    expect(refusedForGood(new ApiError('POST /studies', 400, 'too many slices'))).toBe(true);
    expect(refusedForGood(new ApiError('POST /studies', 413, 'too large'))).toBe(true);
    for (const status of [401, 403, 408, 429, 500, 503]) {
      expect(refusedForGood(new ApiError('POST /studies', status, 'x'))).toBe(false);
    }
    expect(refusedForGood(new Error('cannot reach the API'))).toBe(false);
  });
});
