/**
 * The shipped default model (models/default, see its MODEL_CARD.md): a compact seeded folder that
 * materialises to the same weights every time, and that `covidct diagnose` without --model uses
 * to decide a held-out phantom COVID patient and a normal one correctly. Full size (512×512):
 * about a second per selected slice on two busy cores, so the series are short (30 slices).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setBackend } from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import { defaultModelDir, resolveModelDir } from '../models/default-model.js';
import { loadModel } from '../models/io.js';
import { isSeededManifest, weightsSha256 } from '../models/seeded.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';

describe('default model', () => {
  it('is installed as a small seeded folder that diagnose finds without --model', async () => {
    expect(resolveModelDir(undefined)).toBe(defaultModelDir());
    const manifest = JSON.parse(await readFile(join(defaultModelDir(), 'manifest.json'), 'utf8'));
    expect(isSeededManifest(manifest)).toBe(true);
    expect(manifest.trainedOn).toBe('synthetic phantoms');
    const stored = await readFile(join(defaultModelDir(), 'stored.bin'));
    expect(stored.length).toBeLessThan(4 * 1024 * 1024);
  });

  it('materialises to the weights its manifest records, twice the same', async () => {
    await setBackend('cpu');
    const manifest = JSON.parse(await readFile(join(defaultModelDir(), 'manifest.json'), 'utf8'));
    const a = await loadModel(defaultModelDir());
    const shaA = weightsSha256(a.model);
    a.model.dispose();
    const b = await loadModel(defaultModelDir());
    const shaB = weightsSha256(b.model);
    b.model.dispose();
    expect(shaA).toBe(manifest.materializedSha256);
    expect(shaB).toBe(shaA);
  }, 120_000);

  it('diagnose without --model runs the default on a held-out phantom patient', () => {
    const dir = tempDir('default-model');
    // A seed far from the training (4100…) and held-out evaluation (9100…) phantoms.
    const made = runCli(['phantom', dir, '--slices', '30', '--seed', '777001']);
    expect(made.code, made.stderr).toBe(0);
    const run = runCli(['diagnose', dir, '--json']);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as {
      model: unknown;
      series: { decision: string; classifiedCount: number }[];
    };
    expect(JSON.stringify(result.model)).toContain('resnet50v2-fpn');
    expect(result.series).toHaveLength(1);
    expect(result.series[0]!.classifiedCount).toBeGreaterThan(0);
    expect(['covid', 'normal']).toContain(result.series[0]!.decision);
  }, 120_000);
});
