/**
 * The command line's Node 20 support notice (cli/node-support.ts): once per machine, only on Node
 * 20 and only in a terminal; and its cache folder is the one the ONNX cache lives in.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { covidctCacheDir, NODE_20_NOTICE, nodeSupportNotice } from '../cli/node-support.js';
import { onnxCacheDir } from '../models/onnx/cache.js';

const made: string[] = [];
afterEach(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh cache folder and a notice context writing into `lines`. */
function context(lines: string[], over: { nodeVersion?: string; isTTY?: boolean } = {}) {
  const cache = mkdtempSync(join(tmpdir(), 'covidct-notice-'));
  made.push(cache);
  return {
    cache,
    nodeVersion: over.nodeVersion ?? '20.20.2',
    isTTY: over.isTTY ?? true,
    env: { COVIDCT_CACHE_DIR: cache },
    write: (line: string) => lines.push(line),
  };
}

describe('the Node 20 support notice', () => {
  it('is one line naming both dates, printed once per cache folder', () => {
    const lines: string[] = [];
    const ctx = context(lines);
    expect(nodeSupportNotice(ctx)).toBe(true);
    expect(nodeSupportNotice(ctx)).toBe(false);
    expect(nodeSupportNotice(ctx)).toBe(false);
    expect(lines).toEqual([`covidct: ${NODE_20_NOTICE}\n`]);
    expect(lines[0]).toMatch(
      /^covidct: Node 20 reached end of life on 2026-04-30; covidct supports it until \d{4}-\d\d-\d\d/,
    );
    expect(readdirSync(join(ctx.cache, 'notices'))).toHaveLength(1);
  });

  it('is not printed on Node 22, nor when stderr is not a terminal', () => {
    const lines: string[] = [];
    expect(nodeSupportNotice(context(lines, { nodeVersion: '22.23.5' }))).toBe(false);
    expect(nodeSupportNotice(context(lines, { nodeVersion: '24.1.0' }))).toBe(false);
    const piped = context(lines, { isTTY: false });
    expect(nodeSupportNotice(piped)).toBe(false);
    expect(existsSync(join(piped.cache, 'notices'))).toBe(false);
    expect(lines).toEqual([]);
  });

  it('is not printed, and does not throw, where the cache folder cannot be written', () => {
    const lines: string[] = [];
    const ctx = context(lines);
    const file = join(ctx.cache, 'a-file');
    writeFileSync(file, '');
    expect(nodeSupportNotice({ ...ctx, env: { COVIDCT_CACHE_DIR: file } })).toBe(false);
    expect(lines).toEqual([]);
  });

  it("remembers it in covidct's cache folder, the ONNX cache's parent", () => {
    for (const env of [
      { COVIDCT_CACHE_DIR: '/x/cache' },
      { XDG_CACHE_HOME: '/x/xdg' },
      { COVIDCT_CACHE_DIR: '', XDG_CACHE_HOME: '' },
      {},
    ]) {
      expect(covidctCacheDir(env)).toBe(dirname(onnxCacheDir(env)));
    }
  });
});
