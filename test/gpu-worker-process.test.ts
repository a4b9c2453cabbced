/**
 * The built GPU worker process (dist/gpu-worker/main.js) against the local servers: SIGTERM
 * mid-batch drains it (exit 0, every message voted and deleted or left whole).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { InferenceMessage } from '../pipeline/index.js';
import { QUEUES, WORKER_ENV } from '../pipeline/index.js';
import {
  collectVotes,
  inferenceQueue,
  MODEL,
  makeMessage,
  purgeInference,
  send,
  stack,
  useWorkerStack,
  waitFor,
} from './helpers/worker-stack.js';

useWorkerStack();

const BUILT_WORKER = fileURLToPath(new URL('../dist/gpu-worker/main.js', import.meta.url));

describe('GPU worker process', () => {
  it.skipIf(!existsSync(BUILT_WORKER))(
    'drains on SIGTERM mid-batch: exit 0, every message either voted and deleted or left whole',
    async () => {
      await purgeInference();
      const messages: InferenceMessage[] = [];
      for (let i = 0; i < 4; i++) {
        messages.push(
          await makeMessage(
            { hospital: 'h3', studyId: `drain${i}`, seriesId: 'A' },
            [700, 710, 720, 730, 400, 410],
          ),
        );
      }
      await send(...messages);
      const child: ChildProcess = spawn(process.execPath, [BUILT_WORKER], {
        env: {
          ...process.env,
          ...stack.env,
          COVIDCT_MODEL: MODEL,
          [WORKER_ENV.healthPort]: '0',
          [WORKER_ENV.batchSlices]: '6',
          [WORKER_ENV.poolSize]: '1',
          [WORKER_ENV.waitSeconds]: '1',
          [WORKER_ENV.visibilitySeconds]: '30',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout!.on('data', (c) => {
        output += c;
      });
      child.stderr!.on('data', (c) => {
        output += c;
      });
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      try {
        // The worker must be up (its SIGTERM handler installed, polling) and holding this test's messages.
        await waitFor(
          'a batch in flight',
          () => output.includes('polling') && inferenceQueue().inflight > 0,
          30_000,
        );
        child.kill('SIGTERM');
        expect(await exited).toBe(0);
      } finally {
        child.kill('SIGKILL');
      }
      expect(output).toContain('draining');
      // No GPU here: the worker classifies on the CPU engine, ONNX Runtime.
      expect(/"message": "model loaded",[\s\S]*?"backend": "(\w+)"/.exec(output)?.[1]).toBe('ort');
      expect(output).not.toContain('WORKERTEST');
      const votes = await collectVotes(0);
      const voted = new Set(votes.flatMap((m) => m.votes.map((v) => v.key)));
      const q = stack.servers.fauxqs.inspectQueue(QUEUES.inference.name)!;
      const left = [...q.messages.ready, ...q.messages.inflight.map((f) => f.message)].map(
        (m) => (JSON.parse(m.body) as InferenceMessage).studyId,
      );
      let completed = 0;
      for (const m of messages) {
        const keys = m.slices.map((s) => voted.has(s.key));
        if (keys.every(Boolean)) {
          completed++;
          expect(left).not.toContain(m.studyId);
        } else {
          // Not voted at all (never half), and still on the queue to be taken again.
          expect(keys.some(Boolean)).toBe(false);
          expect(left).toContain(m.studyId);
        }
      }
      // Whatever was in flight when the signal came was finished, work not started was handed back
      // (a signal between receive and classification hands everything back: that is a drain too).
      // Messages still in flight are whole and come back after their visibility timeout: the local
      // server completes a long poll the draining worker abandoned (as SQS may), so it can hold some.
      expect(completed + left.length).toBe(messages.length);
    },
  );
});
