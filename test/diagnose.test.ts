/**
 * Diagnosis end to end: classify and diagnose through the built CLI and in-process, with a tiny
 * model whose decision we know (COVID when the mean raw value of the selection region, where the
 * lungs are, exceeds RULE_LIMIT), so every label and vote figure can be checked against an
 * independent computation from the decoded pixels. The full-size ResNet50V2-FPN run is in
 * test/full/ (`npm run test:full`).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ARCHITECTURES_HELP } from '../cli/commands/model.js';
import { readSlice } from '../core/read.js';
import { initBackend } from '../models/backend.js';
import { CLASS_NAMES } from '../models/classes.js';
import { classifierId, labelOf, loadClassifier, topologyInputShape } from '../models/classifier.js';
import { defaultModelDir, NoDefaultModelError, resolveModelDir } from '../models/default-model.js';
import { type DiagnoseResult, diagnoseStudy } from '../models/diagnose.js';
import { saveModel } from '../models/io.js';
import { defaultOrtLayout } from '../models/onnx/runtime.js';
import { ARCHITECTURES } from '../models/registry.js';
import { CLI, runCli } from './helpers/cli.js';
import { checkAgainstRule, expectedLabels } from './helpers/rule-checks.js';
import { buildRuleModel, ruleLabel } from './helpers/rule-model.js';
import { tempDir } from './helpers/tmp.js';

const SAMPLE = 'samples/lung-pet-ct-dx-A0002';

const work = tempDir('covidct-diagnose-');
const modelDir = join(work, 'rule-model');
/** The rule model again, declared for diagnostic use: `diagnose` then warns of nothing. */
const diagnosticModelDir = join(work, 'rule-model-diagnostic');
const DIAGNOSTIC_USE = { diagnostic: true, statement: 'covidct tests: validated on its own rule' };
const phantom = join(work, 'phantom-study');
/** A study with a good one-slice series and a series of 128×128 slices. */
const mixed = join(work, 'mixed');

beforeAll(async () => {
  await initBackend({ prefer: 'wasm', log: () => {} });
  const m = buildRuleModel();
  await saveModel(m, modelDir, { arch: 'mean-rule', classes: [...CLASS_NAMES], createdBy: 'covidct tests' });
  await saveModel(m, diagnosticModelDir, {
    arch: 'mean-rule',
    classes: [...CLASS_NAMES],
    createdBy: 'covidct tests',
    intendedUse: DIAGNOSTIC_USE,
  });
  m.dispose();
  // A two-series phantom study: one COVID and one normal series, few slices.
  for (const [name, extra] of [
    ['covid', ['--covid', '--seed', '3']],
    ['normal', ['--seed', '4']],
  ] as const) {
    const run = runCli(['phantom', join(phantom, name), '--slices', '16', ...extra]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
  }
  await mkdir(join(mixed, 'small'), { recursive: true });
  await copyFile('test/fixtures/dicom/ct-small-nopreamble.dcm', join(mixed, 'small', 'ct-small.dcm'));
  await copyFile(join(phantom, 'normal', 'slice-004.tif'), join(mixed, 'good.tif'));
});

describe('diagnoseStudy (in process)', () => {
  it('diagnoses the real A0002 series: 12 + 12 selected, 24 classified, labels and votes as the rule says', async () => {
    const loaded = await loadClassifier(modelDir);
    expect(loaded.inputShape).toEqual([512, 512, 1]);
    let built = 0;
    const classifier = {
      ...loaded,
      model: () => {
        built++;
        return loaded.model();
      },
    };
    const stages = new Set<string>();
    const result = await diagnoseStudy(SAMPLE, { model: classifier, onProgress: (s) => stages.add(s) });
    loaded.dispose();
    // With a pool of workers and no heatmaps, this thread never builds its own copy.
    expect(built).toBe(result.workers > 1 ? 0 : 1);
    expect(result.series.map((s) => [s.id, s.slices.length, s.selectedCount])).toEqual([
      ['B40f', 30, 12],
      ['B70f', 30, 12],
    ]);
    expect(result.study.selectedCount).toBe(24);
    expect(result.study.classifiedCount).toBe(24);
    checkAgainstRule(result, await expectedLabels(SAMPLE));
    // The rule's figures on this sample (region means 473…659): 6 COVID slices in each series.
    expect(result.series.map((s) => s.covidCount)).toEqual([6, 6]);
    expect(result.study.decision).toBe('covid');
    expect(result.threshold).toBe(0.3);
    expect(result.backend).toBe('wasm');
    expect(result.model.arch).toBe('mean-rule');
    expect(result.model.id).toBe(classifierId('mean-rule', result.model.sha256!));
    expect(result.model.sha256).toMatch(/^[0-9a-f]{64}$/);
    for (const key of [
      'readSelectMs',
      'decodeMs',
      'poolStartMs',
      'classifyMs',
      'heatmapsMs',
      'totalMs',
    ] as const) {
      expect(result.timings[key]).toBeGreaterThanOrEqual(0);
    }
    expect(result.timings.totalMs).toBeGreaterThanOrEqual(
      result.timings.readSelectMs + result.timings.decodeMs,
    );
    expect([...stages]).toEqual(['read', 'decode', 'classify']);
  });

  it('fails a series whose slices do not fit the model, naming the file and both sizes, and goes on', async () => {
    const classifier = await loadClassifier(modelDir);
    const result = await diagnoseStudy(mixed, { model: classifier, poolSize: 1 });
    classifier.dispose();
    const small = result.series.find((s) => s.id === 'small')!;
    expect(small.error).toMatch(/ct-small\.dcm: slice is 128×128, the model takes 512×512/);
    expect(small.classifiedCount).toBe(0);
    expect(small.decision).toBeNull();
    expect(result.study.classifiedCount).toBe(1);
  });

  it('reads the input shape from a saved topology without building the model', () => {
    const input = { class_name: 'InputLayer', config: { batch_input_shape: [null, 256, 128, 1] } };
    expect(topologyInputShape({ class_name: 'Model', config: { layers: [input] } })).toEqual([256, 128, 1]);
    const dense = { class_name: 'Dense', config: { batch_input_shape: [null, 4] } };
    expect(topologyInputShape({ class_name: 'Sequential', config: { layers: [dense] } })).toBeUndefined();
    expect(topologyInputShape({ class_name: 'Model', config: { layers: [input, input] } })).toBeUndefined();
    expect(topologyInputShape(null)).toBeUndefined();
  });

  it('labels by argmax with ties to COVID', () => {
    expect(labelOf([0.7, 0.3])).toBe('covid');
    expect(labelOf([0.5, 0.5])).toBe('covid');
    expect(labelOf([0.2, 0.8])).toBe('normal');
  });

  it('never falls back to random weights: no model folder is one clear error', () => {
    expect(() => resolveModelDir(undefined, join(work, 'no-such-default'))).toThrow(NoDefaultModelError);
    expect(() => resolveModelDir(undefined, join(work, 'no-such-default'))).toThrow(
      'no default model installed yet: pass --model DIR (a folder from `covidct import-keras` or `covidct train`)',
    );
    expect(resolveModelDir('given', join(work, 'no-such-default'))).toBe('given');
    expect(resolveModelDir(undefined, modelDir)).toBe(modelDir);
    expect(relative(process.cwd(), defaultModelDir())).toBe(join('models', 'default'));
  });
});

describe('covidct classify', () => {
  it('prints { file, probabilities, label } per file, as the rule says', async () => {
    const files = ['slice-004.tif', 'slice-008.tif'].map((f) => join(phantom, 'normal', f));
    const run = runCli(['classify', '--model', modelDir, ...files, '--json']);
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout) as { file: string; probabilities: number[]; label: string }[];
    expect(out.map((r) => r.file)).toEqual(files);
    for (const r of out) {
      expect(Object.keys(r).sort()).toEqual(['file', 'label', 'probabilities']);
      expect(r.probabilities).toHaveLength(2);
      expect(r.probabilities[0]! + r.probabilities[1]!).toBeCloseTo(1, 5);
      const rows = await readSlice(r.file);
      expect(r.label).toBe(ruleLabel(rows.pixels, 512));
    }
  });

  it('rejects a slice of another size in one line naming the file and both sizes', () => {
    const file = 'test/fixtures/dicom/ct-small-nopreamble.dcm';
    const run = runCli(['classify', '--model', modelDir, join(phantom, 'normal', 'slice-004.tif'), file]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    // Apart from the backend's one-line log, only the error.
    expect(
      run.stderr
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('covidct: backend ')),
    ).toEqual([
      `covidct: ${file}: slice is 128×128, the model takes 512×512 (slices are fed as they are, not resized)`,
    ]);
  });
});

describe('covidct diagnose', () => {
  it('diagnoses a phantom study end to end and writes Grad-CAM PNGs for exactly the COVID slices', async () => {
    const heatmaps = join(work, 'heatmaps');
    const run = runCli([
      'diagnose',
      phantom,
      '--model',
      modelDir,
      '--threshold',
      '0.25',
      '--heatmaps',
      heatmaps,
      '--json',
    ]);
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout) as DiagnoseResult;
    expect(result.series.map((s) => s.id)).toEqual(['covid', 'normal']);
    expect(result.threshold).toBe(0.25);
    checkAgainstRule(result, await expectedLabels(phantom));
    const covidSlices = result.series.flatMap((s) =>
      s.slices.filter((x) => x.label === 'covid').map((x) => ({ s, x })),
    );
    expect(covidSlices.length).toBeGreaterThan(0);
    for (const { s, x } of covidSlices) {
      expect(x.heatmap).toBe(join(heatmaps, s.id, `${x.file}.png`));
      expect([...readFileSync(x.heatmap!).subarray(0, 8)]).toEqual([
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a,
      ]);
    }
    const written = readdirSync(heatmaps, { recursive: true }).filter((f) => String(f).endsWith('.png'));
    expect(written).toHaveLength(covidSlices.length);
    expect(result.series.flatMap((s) => s.slices).filter((x) => x.label === 'normal' && x.heatmap)).toEqual(
      [],
    );
    expect(result.timings.heatmapsMs).toBeGreaterThan(0);
    // Classified on ONNX Runtime, Grad-CAM on TensorFlow.js: its model build and cost per COVID slice apart.
    expect(result.backend).toBe('ort');
    expect(result.timings.heatmapModelMs).toBeGreaterThan(0);
    expect(result.timings.heatmapMsPerSlice).toBeCloseTo(result.timings.heatmapsMs / covidSlices.length, 6);
  });

  it('prints a readable summary without --json', () => {
    const run = runCli(['diagnose', SAMPLE, '--model', modelDir]);
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines[0]).toBe(`${SAMPLE}: COVID: 12 of 24 classified slices COVID (50.0%); threshold 30.0%`);
    expect(lines[1]).toMatch(
      /^ {2}B40f: COVID: 6 of 12 classified slices COVID \(50\.0%\); 12 of 30 slices selected$/,
    );
    // No GPU here or in CI: the CPU engine is ONNX Runtime (a session per worker thread from 2 cores on).
    const sessions = defaultOrtLayout().sessions;
    expect(lines[3]).toBe(
      `${lines[3]!.slice(0, lines[3]!.indexOf(','))}, backend ort${sessions > 1 ? ` (${sessions} workers)` : ''}`,
    );
    expect(lines[3]).toMatch(/^model mean-rule@[0-9a-f]{12}, /);
    // A manifest without intendedUse: not for diagnostic use, said on stdout and warned on stderr.
    expect(lines[4]).toBe('intended use: not diagnostic, no intended use declared: not for diagnostic use');
    expect(lines[5]).toMatch(/^time: read\+select .*, total /);
    expect(run.stderr).toMatch(
      /^covidct: model mean-rule@[0-9a-f]{12} is not for diagnostic use \(no intended use declared: not for diagnostic use\): this decision is not a diagnosis$/m,
    );
  });

  it("carries the model manifest's intendedUse in --json and warns only when it is not diagnostic", () => {
    const quiet = runCli(['diagnose', SAMPLE, '--model', diagnosticModelDir, '--json']);
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).not.toContain('diagnostic use');
    expect((JSON.parse(quiet.stdout) as DiagnoseResult).intendedUse).toEqual(DIAGNOSTIC_USE);
  });

  it.each(['0', '1.5', '-0.1', 'abc', '', '0.12345', '1e-300'])(
    'rejects --threshold %j in one line',
    (value) => {
      const run = runCli(['diagnose', SAMPLE, '--model', modelDir, '--threshold', value]);
      expect(run.code).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(
        /--threshold: '.*' is not allowed, expected a multiple of 0\.0001 from 0\.0001 to 1/,
      );
      expect(run.stderr).not.toMatch(/\n\s+at /);
    },
  );

  it('rejects an unknown --backend in one line', () => {
    const run = runCli(['diagnose', SAMPLE, '--model', modelDir, '--backend', 'tpu']);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      "covidct: --backend: 'tpu' is not a backend: expected one of gpu, ort, node, wasm, cpu or auto\n",
    );
  });

  it('exits 1 and names the series when a series fails', () => {
    const run = runCli(['diagnose', mixed, '--model', modelDir, '--json', '--workers', '1']);
    expect(run.code).toBe(1);
    const result = JSON.parse(run.stdout) as DiagnoseResult;
    expect(result.series.find((s) => s.id === 'small')!.error).toMatch(/ct-small\.dcm: slice is 128×128/);
    expect(run.stderr).toMatch(/^covidct: small: .*ct-small\.dcm: slice is 128×128/m);
  });
});

describe('command line start-up and bench classify', () => {
  it('registers every command without loading TensorFlow.js', () => {
    const script = `const { buildProgram } = await import(${JSON.stringify(join(CLI, '..', 'program.js'))}); buildProgram(); process.stdout.write(String(globalThis._tfengine === undefined));`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe('true');
  });

  it("names the registry's architectures in help text", () => {
    expect(ARCHITECTURES_HELP).toBe(ARCHITECTURES.join(', '));
  });

  it('times ONNX Runtime, wasm on one thread and the pool, and says which backend each ran on', () => {
    const run = runCli([
      'bench',
      'classify',
      '--arch',
      'resnet50v2',
      '--input-size',
      '64',
      '--width',
      '0.0625',
      '--batch',
      '1',
      '--runs',
      '1',
      '--rounds',
      '1',
      '--workers',
      '2',
      '--json',
    ]);
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout) as {
      arch: string;
      inputShape: number[];
      variants: {
        name: string;
        backend: string;
        workers: number;
        msPerSlice: number;
        slicesPerSecond: number;
      }[];
      reference: unknown;
      referenceError?: string;
      unavailable: { name: string }[];
    };
    expect(result.arch).toBe('resnet50v2');
    expect(result.inputShape).toEqual([64, 64, 1]);
    expect(result.variants.map((v) => [v.name, v.backend, v.workers])).toEqual([
      ['ort', 'ort', defaultOrtLayout().sessions],
      ['wasm-1-thread', 'wasm', 1],
      ['wasm-pool', 'wasm', 2],
    ]);
    // The independent reference exists for the paper's network only: a reason, not a wrong baseline.
    expect(result.reference).toBeNull();
    expect(result.referenceError).toMatch(/reference_onnx\.py builds resnet50v2-fpn only, not resnet50v2/);
    for (const v of result.variants) expect(v.slicesPerSecond).toBeCloseTo(1000 / v.msPerSlice, 6);
    expect(result.unavailable.map((u) => u.name)).toContain('cpu');
  });
});
