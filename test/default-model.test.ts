/**
 * The shipped default model (models/default, see its MODEL_CARD.md): a small tfjs folder of the
 * paper's architecture at 1/16 width, trained on phantoms, that `covidct diagnose` uses without
 * --model and that decides held-out phantom COVID and normal patients correctly.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultModelDir, resolveModelDir } from '../models/default-model.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';

/** What the default model is for (its manifest's intendedUse). */
const DEMO_USE = { diagnostic: false, statement: 'demonstration on synthetic phantoms, not for diagnosis' };

describe('default model', () => {
  it('is installed as a small model folder that diagnose finds without --model', async () => {
    expect(resolveModelDir(undefined)).toBe(defaultModelDir());
    const manifest = JSON.parse(await readFile(join(defaultModelDir(), 'manifest.json'), 'utf8'));
    expect(manifest.arch).toBe('resnet50v2-fpn');
    expect(manifest.classes).toEqual(['covid', 'normal']);
    expect(manifest.trainedOn).toBe('synthetic phantoms');
    expect(manifest.intendedUse).toEqual(DEMO_USE);
    const topology = JSON.parse(await readFile(join(defaultModelDir(), 'model.json'), 'utf8'));
    expect(JSON.stringify(topology)).toContain('"batch_input_shape":[null,512,512,1]');
    const weights = await stat(join(defaultModelDir(), 'weights.bin'));
    expect(weights.size).toBeLessThan(4 * 1024 * 1024);
  });

  // Held-out phantoms: seeds far from the training (5100…) and evaluation (9100…) sets.
  const patients = [
    { seed: 777001, covid: true },
    { seed: 777002, covid: false },
    { seed: 777003, covid: true },
    { seed: 777004, covid: false },
  ];
  for (const p of patients) {
    const expected = p.covid ? 'covid' : 'normal';
    it(`diagnose without --model decides held-out phantom ${p.seed} (${expected}) correctly`, () => {
      const dir = tempDir('default-model');
      const made = runCli([
        'phantom',
        dir,
        '--slices',
        '40',
        '--seed',
        String(p.seed),
        ...(p.covid ? ['--covid'] : []),
      ]);
      expect(made.code, made.stderr).toBe(0);
      const run = runCli(['diagnose', dir, '--json']);
      expect(run.code, run.stderr).toBe(0);
      const result = JSON.parse(run.stdout) as {
        model: unknown;
        intendedUse: unknown;
        study: { decision: string; covidFraction: number };
        series: { decision: string; classifiedCount: number }[];
      };
      expect(JSON.stringify(result.model)).toContain('resnet50v2-fpn');
      // A demonstration model: every decision says so, and diagnose warns on stderr.
      expect(result.intendedUse).toEqual(DEMO_USE);
      expect(run.stderr).toContain(`is not for diagnostic use (${DEMO_USE.statement})`);
      expect(result.series).toHaveLength(1);
      expect(result.series[0]!.classifiedCount).toBeGreaterThan(0);
      expect(result.study.decision, `covidFraction ${result.study.covidFraction}`).toBe(expected);
    }, 120_000);
  }
});
