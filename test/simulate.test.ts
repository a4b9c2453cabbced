/**
 * The surge model (simulate/): against closed-form queueing answers (a D/D/c backlog that
 * grows at λ − cμ, the M/M/c mean wait from Erlang C), the scaling policy's rules (bounds, scale to
 * zero, cooldowns), the settings it imports, the arrivals parser, the plot, the FLOP count behind
 * the default GPU rate, and `covidct simulate` as a user runs it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import '@tensorflow/tfjs-backend-cpu';
import { setBackend } from '@tensorflow/tfjs-core';
import { layers, sequential } from '@tensorflow/tfjs-layers';
import { PNG } from 'pngjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseSlices } from '../cli/commands/simulate.js';
import { InputError } from '../core/errors.js';
import { countFlops } from '../models/flops.js';
import { buildArchitecture } from '../models/registry.js';
import { DEFAULT_SETTINGS, GPU_SCALING, PIPELINE_DEFAULTS, QUEUES } from '../pipeline/index.js';
import {
  type Arrival,
  PROFILES,
  parseArrivals,
  profileArrivals,
  profileSeconds,
} from '../simulate/arrivals.js';
import { percentiles, type SimulationResult, simulate } from '../simulate/engine.js';
import {
  ASSUMED_GPU_EFFICIENCY,
  estimatedSlicesPerSecond,
  GPU_INSTANCE_TYPES,
  RESNET50V2_FPN_GFLOP_PER_SLICE,
} from '../simulate/gpu.js';
import { DEFAULT_GPU_SLICES_PER_SECOND, defaultParams, type SimulationParams } from '../simulate/params.js';
import { renderSimulationPng } from '../simulate/plot.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';

/** A queue with no pipeline around it: no selection time, one message per study, fixed tasks. */
function queueOnly(c: number, overrides: Partial<SimulationParams> = {}): SimulationParams {
  return {
    ...defaultParams(),
    minTasks: c,
    maxTasks: c,
    selectedFraction: 1,
    slicesPerMessage: 1_000_000,
    receiveBatch: 1,
    batchOverheadSeconds: 0,
    selectOverheadSeconds: 0,
    selectSecondsPerSlice: 0,
    selectConcurrency: 10_000,
    selectBatchSize: 1,
    eventSeconds: 0,
    aggregateSeconds: 0,
    ...overrides,
  };
}

describe('closed-form queues', () => {
  it('D/D/c: constant arrivals above capacity build a backlog of (λ − cμ)·t, each study as the recursion says', () => {
    const c = 2;
    const lambda = 2; // studies per second
    const slices = 10;
    const rate = 5; // slices per second per task → μ = 0.5 studies/s, cμ = 1
    const mu = rate / slices;
    const n = 1200;
    const arrivals: Arrival[] = Array.from({ length: n }, (_, i) => ({
      time: i / lambda,
      hospital: 'h',
      slices,
    }));
    const r = simulate(arrivals, queueOnly(c, { gpuSlicesPerSecond: rate }), { keepStudies: true });
    // Backlog while arrivals last (t < 600 s): visible messages within c + 1 of (λ − cμ)·t.
    const during = r.timeline.filter((p) => p.t > 0 && p.t < n / lambda);
    expect(during.length).toBeGreaterThan(5);
    for (const p of during) expect(Math.abs(p.visible - (lambda - c * mu) * p.t)).toBeLessThanOrEqual(c + 1);
    // FIFO with c equal servers: start_k = max(a_k, start_{k−c} + 1/μ); result = start + 1/μ.
    const start: number[] = [];
    for (let k = 0; k < n; k++) {
      const prev = start[k - c];
      start.push(Math.max(k / lambda, prev === undefined ? 0 : prev + 1 / mu));
    }
    const records = r.studyRecords ?? [];
    expect(records).toHaveLength(n);
    records.forEach((s, k) => {
      expect(s.resultAt).toBeCloseTo((start[k] ?? Number.NaN) + 1 / mu, 9);
    });
    expect(r.busyGpuHours * 3600).toBeCloseTo(n / mu, 6);
    expect(r.unfinished).toBe(0);
  });

  it('D/D/c below capacity: nobody waits', () => {
    const arrivals: Arrival[] = Array.from({ length: 300 }, (_, i) => ({
      time: i * 1.5,
      hospital: 'h',
      slices: 10,
    }));
    const r = simulate(arrivals, queueOnly(1, { gpuSlicesPerSecond: 10 }));
    expect(r.timeToResultSeconds.max).toBeCloseTo(1, 9);
    expect(r.peakVisible).toBe(0);
  });

  it('M/M/c: the mean wait in the queue matches Erlang C (c = 2, ρ = 0.75) over a long seeded run', () => {
    const c = 2;
    const lambda = 1.5;
    const mu = 1;
    const a = lambda / mu;
    // Erlang C: probability of waiting, then Wq = C / (cμ − λ).
    let sum = 0;
    let term = 1;
    for (let k = 0; k < c; k++) {
      sum += term;
      term *= a / (k + 1);
    }
    const top = (term * c) / (c - a);
    const erlangC = top / (sum + top);
    const wq = erlangC / (c * mu - lambda);
    expect(wq).toBeCloseTo(1.2857, 3);
    const profile = { description: 'M/M/c', segments: [{ studiesPerHour: lambda * 3600, hours: 30 }] };
    // Geometric slices with mean 1000 at 1000 slices/s: exponential service with mean 1 s (to 0.1 %).
    const p = queueOnly(c, {
      gpuSlicesPerSecond: 1000 * mu,
      slices: { kind: 'geometric', mean: 1000 },
      seed: 7,
    });
    const arrivals = profileArrivals(profile, p.seed, 1);
    const r = simulate(arrivals, p, { keepStudies: true });
    const waits = (r.studyRecords ?? []).map((s) => s.firstMessageWait);
    expect(waits.length).toBeGreaterThan(150_000);
    const mean = waits.reduce((x, y) => x + y, 0) / waits.length;
    const waited = waits.filter((w) => w > 0).length / waits.length;
    expect(Math.abs(mean - wq) / wq).toBeLessThan(0.06);
    expect(Math.abs(waited - erlangC)).toBeLessThan(0.02);
    // The service times really are exponential-like: mean ≈ 1 s.
    expect((r.busyGpuHours * 3600) / waits.length).toBeCloseTo(1 / mu, 1);
  });

  it('percentiles use the nearest rank', () => {
    const q = percentiles(Array.from({ length: 100 }, (_, i) => i + 1));
    expect([q.p50, q.p95, q.p99, q.max, q.mean]).toEqual([50, 95, 99, 100, 50.5]);
    expect(percentiles([]).p95).toBe(0);
  });
});

describe('scaling as the stack deploys it', () => {
  const surge = (over: Partial<SimulationParams> = {}, seed = 1): SimulationResult => {
    const p = { ...defaultParams(), ...over, seed };
    return simulate(profileArrivals(PROFILES.surge, seed), p, {
      horizonSeconds: profileSeconds(PROFILES.surge),
    });
  };
  let base: SimulationResult;
  beforeAll(() => {
    base = surge();
  });

  it('imports its parameters from the CDK settings and the queue definitions', () => {
    const p = defaultParams();
    expect(p.maxTasks).toBe(DEFAULT_SETTINGS.maxGpuTasks);
    expect(p.backlogPerTask).toBe(DEFAULT_SETTINGS.backlogPerTask);
    expect(p.instanceType).toBe(DEFAULT_SETTINGS.gpuInstanceType);
    expect(p.selectConcurrency).toBe(DEFAULT_SETTINGS.selectReservedConcurrency);
    expect(p.scaleOutCooldownSeconds).toBe(GPU_SCALING.targetTracking.scaleOutCooldownSeconds);
    expect(p.scaleInCooldownSeconds).toBe(GPU_SCALING.targetTracking.scaleInCooldownSeconds);
    expect(p.startFromZero).toEqual(GPU_SCALING.startFromZero);
    expect(p.receiveBatch).toBe(QUEUES.inference.consumer.batchSize);
    expect(p.selectBatchSize).toBe(QUEUES.ingest.consumer.batchSize);
    expect(p.slicesPerMessage).toBe(PIPELINE_DEFAULTS.slicesPerInferenceMessage);
    expect(p.gpuSlicesPerSecond).toBe(DEFAULT_GPU_SLICES_PER_SECOND);
    expect(p.onDemandUsdPerHour).toBe(
      GPU_INSTANCE_TYPES[DEFAULT_SETTINGS.gpuInstanceType]?.onDemandUsdPerHour,
    );
  });

  it('never runs more tasks or hosts than the maximum, and reaches it under a surge', () => {
    expect(base.peakTasks).toBe(DEFAULT_SETTINGS.maxGpuTasks);
    expect(base.peakHosts).toBeLessThanOrEqual(DEFAULT_SETTINGS.maxGpuTasks);
    for (const max of [1, 3]) {
      const r = surge({ maxTasks: max });
      expect(r.peakTasks).toBeLessThanOrEqual(max);
      expect(r.peakHosts).toBeLessThanOrEqual(max);
      expect(r.peakDesired).toBeLessThanOrEqual(max);
    }
  });

  it('starts from zero on the step policy, and scales back to zero with every host gone when idle', () => {
    const first = base.scalingEvents[0];
    expect(first?.policy).toBe('start-from-zero');
    // The first datapoint with a waiting message is the first period's; the alarm sees it one period later.
    expect(first?.t).toBe(2 * GPU_SCALING.metricPeriodSeconds);
    const last = base.timeline[base.timeline.length - 1];
    expect(last).toMatchObject({ running: 0, desired: 0, hosts: 0, visible: 0, open: 0 });
    expect(base.unfinished).toBe(0);
    expect(base.scalingEvents[base.scalingEvents.length - 1]?.to).toBe(0);
  });

  it('respects the cooldowns and the datapoints each policy needs', () => {
    const by = (policy: string) => base.scalingEvents.filter((e) => e.policy === policy).map((e) => e.t);
    const gaps = (ts: number[]) => ts.slice(1).map((t, i) => t - (ts[i] ?? 0));
    expect(by('scale-out').length).toBeGreaterThan(0);
    expect(by('scale-in').length).toBeGreaterThan(0);
    for (const g of gaps(by('scale-out')))
      expect(g).toBeGreaterThanOrEqual(GPU_SCALING.targetTracking.scaleOutCooldownSeconds);
    for (const g of gaps(by('scale-in')))
      expect(g).toBeGreaterThanOrEqual(GPU_SCALING.targetTracking.scaleInCooldownSeconds);
    for (const g of gaps(by('start-from-zero')))
      expect(g).toBeGreaterThanOrEqual(GPU_SCALING.startFromZero.cooldownSeconds);
    // Scale-in needs 15 low datapoints, all with a task running: never within 15 periods of a task starting.
    const firstRunning = base.timeline.find((p) => p.running > 0)?.t ?? 0;
    expect(by('scale-in')[0] ?? 0).toBeGreaterThanOrEqual(
      firstRunning + 15 * GPU_SCALING.metricPeriodSeconds,
    );
  });

  it('a cooldown longer than the run allows one scale-out only', () => {
    const r = surge({ scaleOutCooldownSeconds: 1e9 });
    expect(r.scalingEvents.filter((e) => e.policy === 'scale-out')).toHaveLength(1);
  });

  it('a minimum keeps tasks up, and an always-on task removes the cold start', () => {
    const r = surge({ minTasks: 1 });
    expect(r.timeline.every((p) => p.desired >= 1 && p.hosts >= 1)).toBe(true);
    expect(r.timeToResultSeconds.p95).toBeLessThan(base.timeToResultSeconds.p95);
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const again = surge();
    expect(JSON.stringify(again)).toBe(JSON.stringify(base));
    expect(surge({}, 2).timeToResultSeconds).not.toEqual(base.timeToResultSeconds);
  });

  it('charges host-hours at the given prices', () => {
    const r = surge({ spotUsdPerHour: 0.2 });
    expect(r.onDemand.totalUsd).toBeCloseTo(r.gpuHours * 0.526, 9);
    expect(r.spot?.perStudyUsd).toBeCloseTo((r.gpuHours * 0.2) / r.studies, 12);
    expect(r.gpuHours).toBeGreaterThanOrEqual(r.busyGpuHours);
  });

  it('draws the timeline as a PNG with the series in it', () => {
    const png = PNG.sync.read(
      Buffer.from(renderSimulationPng(base, { width: 600, height: 360, title: 'surge' })),
    );
    expect([png.width, png.height]).toEqual([600, 360]);
    let blue = 0;
    let red = 0;
    for (let i = 0; i < png.data.length; i += 4) {
      if (png.data[i] === 31 && png.data[i + 1] === 90) blue++;
      if (png.data[i] === 210 && png.data[i + 1] === 40) red++;
    }
    expect(blue).toBeGreaterThan(100);
    expect(red).toBeGreaterThan(100);
  });
});

describe('arrivals', () => {
  it('profiles: Poisson at the profile rate, spread over hospitals, deterministic', () => {
    const a = profileArrivals(PROFILES.surge, 3);
    expect(Math.abs(a.length - 6000)).toBeLessThan(4 * Math.sqrt(6000));
    expect(new Set(a.map((x) => x.hospital)).size).toBe(10);
    expect(a.every((x, i) => i === 0 || x.time >= (a[i - 1]?.time ?? 0))).toBe(true);
    expect(profileArrivals(PROFILES.surge, 3)).toEqual(a);
  });

  it('parses JSON and CSV, seconds or ISO timestamps', () => {
    expect(
      parseArrivals('[{"time": 5, "hospital": "b", "slices": 40}, {"time": 1, "hospital": "a"}]', 'f'),
    ).toEqual([
      { time: 1, hospital: 'a' },
      { time: 5, hospital: 'b', slices: 40 },
    ]);
    const csv = 'timestamp,hospital,slices\n2026-01-01T10:00:30Z,a,300\n# comment\n2026-01-01T10:00:00Z,b,\n';
    expect(parseArrivals(csv, 'f.csv')).toEqual([
      { time: 0, hospital: 'b' },
      { time: 30, hospital: 'a', slices: 300 },
    ]);
    expect(parseArrivals('{"arrivals": [{"time": "2", "hospital": "x"}]}', 'f')).toEqual([
      { time: 2, hospital: 'x' },
    ]);
  });

  it('rejects bad files with one line naming the record', () => {
    const bad: [string, RegExp][] = [
      ['[', /^f: not valid JSON/],
      ['[]', /^f: holds no arrivals/],
      ['[{"time": -1, "hospital": "a"}]', /^f arrival 1: time must be/],
      ['[{"time": 1}]', /^f arrival 1: hospital must be/],
      ['[{"time": 1, "hospital": "a", "slices": 0}]', /^f arrival 1: slices must be/],
      ['a,b\n1,2', /^f: CSV needs a header/],
      [
        '[{"time": 1, "hospital": "a"}, {"time": "2026-01-01T00:00:00Z", "hospital": "a"}]',
        /^f: mixes timestamps/,
      ],
    ];
    for (const [text, message] of bad) {
      let error: unknown;
      try {
        parseArrivals(text, 'f');
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(InputError);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).not.toContain('\n');
    }
  });
});

describe('GPU estimate', () => {
  beforeAll(async () => {
    await setBackend('cpu');
  });

  it('counts a convolution and a dense layer by hand', () => {
    const model = sequential({
      layers: [
        layers.conv2d({ inputShape: [8, 8, 2], filters: 16, kernelSize: 3, padding: 'same', useBias: true }),
        layers.flatten(),
        layers.dense({ units: 4, useBias: false }),
      ],
    });
    const f = countFlops(model);
    const conv = 8 * 8 * 16 * 3 * 3 * 2;
    const dense = 8 * 8 * 16 * 4;
    expect(f.macs).toBe(conv + dense);
    expect(f.flops).toBe(2 * conv + 8 * 8 * 16 + 2 * dense);
    model.dispose();
  });

  it('the default GPU rate comes from the FLOPs of the model the registry builds', () => {
    const model = buildArchitecture('resnet50v2-fpn');
    const f = countFlops(model);
    model.dispose();
    expect(+(f.flops / 1e9).toFixed(2)).toBe(RESNET50V2_FPN_GFLOP_PER_SLICE);
    expect(f.matmulFlops / f.flops).toBeGreaterThan(0.99);
    const t4 = GPU_INSTANCE_TYPES['g4dn.xlarge'];
    expect(estimatedSlicesPerSecond('g4dn.xlarge')).toBeCloseTo(
      ((t4?.peakFp32Tflops ?? 0) * 1000 * ASSUMED_GPU_EFFICIENCY) / RESNET50V2_FPN_GFLOP_PER_SLICE,
      9,
    );
    expect(DEFAULT_GPU_SLICES_PER_SECOND).toBeCloseTo(59.3, 1);
  });
});

describe('covidct simulate', () => {
  const dir = tempDir('covidct-simulate-');

  it('--profile surge --json --plot: figures within the bounds and a PNG', () => {
    const plot = join(dir, 'surge.png');
    const run = runCli(['simulate', '--profile', 'surge', '--json', '--max-tasks', '3', '--plot', plot]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const r = JSON.parse(run.stdout) as SimulationResult & { source: string; pricesAsOf: string };
    expect(r.source).toContain('surge');
    expect(r.pricesAsOf).toMatch(/\d{4}/);
    expect(r.params.maxTasks).toBe(3);
    expect(r.peakTasks).toBeLessThanOrEqual(3);
    expect(r.timeToResultSeconds.p95).toBeGreaterThan(r.timeToResultSeconds.p50);
    expect(r.onDemand.perStudyUsd).toBeGreaterThan(0);
    const png = PNG.sync.read(readFileSync(plot));
    expect(png.width).toBeGreaterThan(100);
  });

  it('--arrivals CSV prints the summary', () => {
    const file = join(dir, 'arrivals.csv');
    writeFileSync(file, 'time,hospital,slices\n0,a,200\n10,b,300\n20,a,100\n');
    const run = runCli(['simulate', '--arrivals', file, '--spot-price', '0.2']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('3 studies');
    expect(run.stdout).toMatch(/time to result: p50 .*p95 .*p99/);
    expect(run.stdout).toContain('Spot at $0.2/h');
  });

  it('--slices: N or MIN-MAX', () => {
    expect(parseSlices('300')).toEqual({ kind: 'fixed', slices: 300 });
    expect(parseSlices('100-400')).toEqual({ kind: 'uniform', min: 100, max: 400 });
    expect(() => parseSlices('9-3')).toThrow(/^--slices: must be N or MIN-MAX/);
  });

  it('bad options: one line, exit 1', () => {
    for (const args of [
      ['simulate'],
      ['simulate', '--profile', 'surge', '--arrivals', 'x.csv'],
      ['simulate', '--profile', 'weekend'],
      ['simulate', '--profile', 'surge', '--instance-type', 'p5.48xlarge'],
      ['simulate', '--arrivals', join(dir, 'missing.json')],
    ]) {
      const run = runCli(args);
      expect(run.code, args.join(' ')).toBe(1);
      expect(run.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(run.stderr).toMatch(/^covidct: /);
    }
  });
});
