/**
 * The worker's logs and metrics in the Lambdas' style (gpu-worker/observability.ts): correlation
 * keys bound once and carried by every line, metrics in the `covidct` namespace with the `service`
 * dimension and PascalCase names. No network.
 */
import { describe, expect, it, vi } from 'vitest';
import {
  correlationKeys,
  publishBatchMetrics,
  WORKER_METRICS,
  type WorkerLog,
  withKeys,
  workerMetrics,
} from '../gpu-worker/observability.js';

describe('worker observability', () => {
  it('puts the correlation keys on every line, before the line’s own attributes', () => {
    const lines: Record<string, unknown>[] = [];
    const sink: WorkerLog = {
      info: (m, a) => lines.push({ level: 'info', m, ...a }),
      warn: (m, a) => lines.push({ level: 'warn', m, ...a }),
      error: (m, a) => lines.push({ level: 'error', m, ...a }),
    };
    const keys = correlationKeys({ hospital: 'h1', studyId: 'st-1', seriesId: 'se-1' } as never);
    expect(keys).toEqual({ hospital: 'h1', study: 'st-1' });
    const log = withKeys(sink, keys);
    log.info('votes sent', { votes: 3 });
    log.warn('slices cannot be classified; reported as failed');
    log.error('votes not sent; messages left to reappear', { error: 'x' });
    expect(lines).toEqual([
      { level: 'info', m: 'votes sent', hospital: 'h1', study: 'st-1', votes: 3 },
      { level: 'warn', m: 'slices cannot be classified; reported as failed', hospital: 'h1', study: 'st-1' },
      {
        level: 'error',
        m: 'votes not sent; messages left to reappear',
        hospital: 'h1',
        study: 'st-1',
        error: 'x',
      },
    ]);
    expect(Object.keys(lines[0]!).slice(2, 4)).toEqual(['hospital', 'study']);
  });

  it('emits one batch as PascalCase metrics in the covidct namespace with the service dimension', () => {
    const metrics = workerMetrics({});
    let emf: ReturnType<typeof metrics.serializeMetrics> | undefined;
    vi.spyOn(metrics, 'publishStoredMetrics').mockImplementation(() => {
      emf = metrics.serializeMetrics();
      return metrics;
    });
    publishBatchMetrics(metrics, {
      slices: 8,
      completed: 2,
      retried: 1,
      heatmaps: 3,
      outcome: { fetchDecodeMs: 10, classifyMs: 20, heatmapsMs: 30, totalMs: 70 },
    });
    const directive = emf!._aws.CloudWatchMetrics[0]!;
    expect(directive.Namespace).toBe('covidct');
    expect(directive.Dimensions).toEqual([['service']]);
    expect((emf as unknown as Record<string, unknown>).service).toBe('covidct-worker');
    const names = directive.Metrics.map((m) => m.Name);
    expect(names.sort()).toEqual(Object.values(WORKER_METRICS).sort());
    for (const name of names) expect(name).toMatch(/^[A-Z][A-Za-z]+$/);
    const values = emf as unknown as Record<string, unknown>;
    expect(values[WORKER_METRICS.slicesClassified]).toBe(8);
    expect(values[WORKER_METRICS.batchDuration]).toBe(70);
  });
});
