/**
 * The ONNX export as a user meets it: `covidct model export-onnx` writes a graph ONNX's checker
 * accepts, and the cache exports a model folder once (keyed by its content), never writes into the
 * model folder, and exports again when the folder changes.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../models/default-model.js';
import { modelFolderSha256 } from '../models/io.js';
import { cachedOnnx, onnxCacheDir, onnxCacheKey } from '../models/onnx/cache.js';
import { exportOnnx, ONNX_EXPORT_VERSION } from '../models/onnx/export.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-onnx-cache-');
const DEFAULT_MODEL = join(packageRoot(), 'models', 'default');

describe('ONNX export cache', () => {
  it('exports once per model content, atomically, outside the model folder', async () => {
    const model = join(work, 'model');
    cpSync(DEFAULT_MODEL, model, { recursive: true });
    const before = readdirSync(model).sort();
    const cache = join(work, 'cache');
    const first = await cachedOnnx(model, cache);
    expect(first.exported).toBe(true);
    const file = `${first.sha256}.v${ONNX_EXPORT_VERSION}.onnx`;
    expect(first.path).toBe(join(cache, file));
    expect(Buffer.compare(readFileSync(first.path), Buffer.from(await exportOnnx(model)))).toBe(0);
    const second = await cachedOnnx(model, cache);
    expect(second).toEqual({ ...first, exported: false });
    // Nothing written beside the model, no temporary file left in the cache.
    expect(readdirSync(model).sort()).toEqual(before);
    expect(readdirSync(cache)).toEqual([file]);
    // Another model content, another entry.
    writeFileSync(join(model, 'manifest.json'), `${readFileSync(join(model, 'manifest.json'), 'utf8')} `);
    const changed = await cachedOnnx(model, cache);
    expect(changed.exported).toBe(true);
    expect(changed.sha256).not.toBe(first.sha256);
    // The weights are in the key too; a caller's own model hash (the classifier's) gives the same key.
    const weights = readFileSync(join(model, 'weights.bin'));
    weights[0] = (weights[0]! + 1) % 256;
    writeFileSync(join(model, 'weights.bin'), weights);
    const reweighted = await onnxCacheKey(model);
    expect(reweighted).not.toBe(changed.sha256);
    expect(await onnxCacheKey(model, await modelFolderSha256(model))).toBe(reweighted);
  });

  it('never reuses a graph an older exporter wrote (the version is in the file name)', async () => {
    const model = join(work, 'model-old-export');
    cpSync(DEFAULT_MODEL, model, { recursive: true });
    const cache = join(work, 'cache-old-export');
    // What the first exporter cached, `<sha256>.onnx`, and what version 1 would be named.
    const fresh = await cachedOnnx(model, join(work, 'cache-fresh'));
    mkdirSync(cache);
    for (const name of [`${fresh.sha256}.onnx`, `${fresh.sha256}.v${ONNX_EXPORT_VERSION - 1}.onnx`]) {
      writeFileSync(join(cache, name), 'stale graph');
    }
    const got = await cachedOnnx(model, cache);
    expect(got.exported).toBe(true);
    expect(readFileSync(got.path, 'utf8')).not.toBe('stale graph');
  });

  it('lives under COVIDCT_CACHE_DIR, else the XDG cache folder', () => {
    expect(onnxCacheDir({ COVIDCT_CACHE_DIR: '/c' })).toBe('/c/onnx');
    expect(onnxCacheDir({ XDG_CACHE_HOME: '/x' })).toBe('/x/covidct/onnx');
  });
});

describe('covidct model export-onnx', () => {
  it('writes a graph ONNX accepts and refuses a folder that is not a model in one line', () => {
    const out = join(work, 'default.onnx');
    const run = runCli(['model', 'export-onnx', DEFAULT_MODEL, out, '--json']);
    expect(run.code, run.stderr).toBe(0);
    const printed = JSON.parse(run.stdout) as { out: string; bytes: number; modelSha256: string };
    expect(printed.bytes).toBe(readFileSync(out).length);
    expect(printed.modelSha256).toMatch(/^[0-9a-f]{64}$/);
    const checked = execFileSync(
      '/usr/bin/python3',
      [
        '-c',
        'import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True); print("ok")',
        out,
      ],
      { encoding: 'utf8' },
    );
    expect(checked.trim()).toBe('ok');
    const bad = runCli(['model', 'export-onnx', work, join(work, 'x.onnx')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/model\.json/);
    expect(existsSync(join(work, 'x.onnx'))).toBe(false);
  });
});
