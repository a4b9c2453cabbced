/**
 * `covidct bench gateway` in a quick mode (30 instances, one repetition, a 1 s quiet period): the
 * JSON has every figure, positive; the rates are the instances over the measured seconds and the
 * ratio is the gateway's rate over storescp's; the end-to-end stages partition the time from the
 * last instance to the SR. Needs dist/ (the bench runs the built gateway; npm test builds first)
 * and DCMTK (storescu, storescp, echoscu, dcmodify).
 */

import { afterEach, describe, expect, it, vi } from 'vitest';
import type { BenchGatewayResult, ReceiverName } from '../cli/bench/gateway.js';
import { registerBench } from '../cli/commands/bench.js';
import { runInProcess } from './helpers/cli.js';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('bench gateway (quick)', () => {
  it('prints the receive rates against storescp and the last instance → SR split', async () => {
    const printed = await runInProcess(registerBench, [
      'bench',
      'gateway',
      '--instances',
      '36',
      '--repetitions',
      '1',
      '--quiet-seconds',
      '1',
      '--json',
    ]);
    const r = JSON.parse(printed) as BenchGatewayResult;
    const positive = (n: number, what: string) =>
      expect(Number.isFinite(n) && n > 0, `${what}: ${n}`).toBe(true);
    // Figures are rounded to 3 significant digits (up to ±0.5 % each).
    const close = (a: number, b: number, what: string) =>
      expect(Math.abs(a - b) / Math.abs(b), `${what}: ${a} vs ${b}`).toBeLessThan(0.011);

    const rx = r.receive;
    // 30 real slices and 6 copies with new SOP Instance UIDs: every one stored (the bench checks).
    expect(rx.instances).toBe(36);
    positive(rx.megabytes, 'megabytes');
    expect(rx.repetitions).toBe(1);
    expect(rx.perRepetition).toHaveLength(1);
    const names: ReceiverName[] = ['gateway', 'storescp', 'storescpDefault'];
    expect([...rx.perRepetition[0]!.order].sort()).toEqual([...names].sort());
    for (const name of names) {
      positive(rx[name].instancesPerSecond, `${name} rate`);
      positive(rx[name].medianSeconds, `${name} seconds`);
      close(rx[name].instancesPerSecond, rx.instances / rx[name].medianSeconds, `${name} rate`);
      const rep = rx.perRepetition[0]!;
      close(rep.seconds[name], rx[name].medianSeconds, `${name} repetition`);
      close(rep.instancesPerSecond[name], rx.instances / rep.seconds[name], `${name} repetition rate`);
    }
    close(rx.ratio, rx.gateway.instancesPerSecond / rx.storescp.instancesPerSecond, 'ratio');
    close(rx.ratioToDefault, rx.gateway.instancesPerSecond / rx.storescpDefault.instancesPerSecond, 'ratio');
    expect(rx.required).toBe(0.5);
    expect(rx.meetsRequirement).toBe(rx.ratio >= 0.5);

    const e = r.endToEnd!;
    expect(e).not.toBeNull();
    expect(e.instances).toBe(30);
    expect(e.quietSeconds).toBe(1);
    expect(e.runs).toHaveLength(1);
    const run = e.runs[0]!;
    expect(['covid', 'normal']).toContain(run.decision);
    // The SR, and an overlay per COVID slice.
    expect(run.objects).toBeGreaterThanOrEqual(1);
    positive(run.totalMs, 'totalMs');
    for (const [stage, ms] of Object.entries(run.stages)) positive(ms, stage);
    // No run can start before the quiet period has passed since the last instance.
    expect(run.stages.quietMs).toBeGreaterThan(1000 - 100);
    const sum = Object.values(run.stages).reduce((a, b) => a + b, 0);
    expect(Math.abs(sum - run.totalMs) / run.totalMs).toBeLessThan(0.01);
    positive(run.cloud.processingMs, 'cloud processing');
    expect(run.cloud.pollLagMs).toBeGreaterThanOrEqual(0);
    expect(Math.abs(run.cloud.processingMs + run.cloud.pollLagMs - run.stages.cloudMs)).toBeLessThan(
      run.stages.cloudMs * 0.01 + 1,
    );
    // Delivering every object takes at least as long as delivering the SR, which goes first.
    expect(run.allDeliveredMs).toBeGreaterThanOrEqual(run.stages.deliverMs * 0.99);
    const shares = run.share.quiet + run.share.gateway + run.share.cloud;
    expect(shares).toBeCloseTo(1, 2);
    close(
      run.share.gateway,
      (run.stages.uploadMs + run.stages.buildMs + run.stages.deliverMs) / run.totalMs,
      'gateway share',
    );
  }, 240_000);
});
