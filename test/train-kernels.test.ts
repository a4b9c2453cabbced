/**
 * The training kernels (models/train/kernels.ts): wasm's convolution gradients, the fixed 1×1 max-pool
 * gradient on wasm, the fixed batched resize gradient on cpu and the batch-norm gradient give the same
 * values as a reference, alone and through a whole (small) ResNet50V2-FPN, without leaking tensors.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildArchitecture } from '../models/registry.js';
import { registerTrainingKernels } from '../models/train/kernels.js';

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.setBackend('cpu');
  registerTrainingKernels();
});

/** Deterministic values in [−1, 1] of a shape. */
function wave(shape: number[], f: number): tf.Tensor {
  return tf.tidy(() =>
    tf.sin(
      tf.reshape(
        tf.mul(
          tf.range(
            0,
            shape.reduce((a, b) => a * b, 1),
          ),
          f,
        ),
        shape,
      ),
    ),
  );
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

async function on<T>(backend: string, f: () => T): Promise<T> {
  await tf.setBackend(backend);
  return f();
}

describe('convolution gradients on wasm', () => {
  const cases = [
    { h: 8, k: 3, s: 1, pad: 'valid' },
    { h: 8, k: 3, s: 1, pad: 'same' },
    { h: 9, k: 3, s: 2, pad: 'same' },
    { h: 8, k: 3, s: 2, pad: 'same' },
    { h: 8, k: 1, s: 2, pad: 'valid' },
    { h: 16, k: 7, s: 2, pad: 'valid' },
    { h: 8, k: 1, s: 1, pad: 'valid' },
  ] as const;
  for (const c of cases) {
    it(`match the cpu kernels: ${c.k}×${c.k}, stride ${c.s}, ${c.pad}, ${c.h}×${c.h}`, async () => {
      const xShape: [number, number, number, number] = [3, c.h, c.h, 5];
      const fShape: [number, number, number, number] = [c.k, c.k, 5, 4];
      const run = () =>
        tf.tidy(() => {
          const x = wave(xShape, 0.7) as tf.Tensor4D;
          const f = wave(fShape, 1.3) as tf.Tensor4D;
          const dy = wave(tf.conv2d(x, f, c.s, c.pad).shape, 0.9);
          const attrs = { strides: c.s, pad: c.pad, dataFormat: 'NHWC' };
          const df = tf
            .engine()
            .runKernel('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape: fShape });
          const dx = tf
            .engine()
            .runKernel('Conv2DBackpropInput', { dy, filter: f }, { ...attrs, inputShape: xShape });
          return [(df as tf.Tensor).dataSync(), (dx as tf.Tensor).dataSync()] as const;
        });
      const before = await on('wasm', () => tf.memory().numTensors);
      const [wf, wx] = await on('wasm', run);
      expect(tf.memory().numTensors).toBe(before);
      const [cf, cx] = await on('cpu', run);
      expect(maxDiff(wf, cf)).toBeLessThan(1e-4);
      expect(maxDiff(wx, cx)).toBeLessThan(1e-4);
    });
  }
});

describe('kernels tfjs 4.22 gets wrong', () => {
  it('1×1 max pool with stride 2: the gradient lands on every second pixel (wasm)', async () => {
    for (const backend of ['wasm', 'cpu']) {
      const g = await on(backend, () =>
        tf.tidy(() => {
          const x = wave([1, 4, 4, 1], 1);
          const w = tf.reshape(tf.tensor1d([1, 2, 3, 4]), [1, 2, 2, 1]);
          return tf
            .grad((t: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(t as tf.Tensor4D, 1, 2, 'valid'), w)))(x)
            .dataSync();
        }),
      );
      expect(Array.from(g)).toEqual([1, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4, 0, 0, 0, 0, 0]);
    }
  });

  it('nearest-neighbour resize: each image of a batch gets its own gradient (cpu)', async () => {
    for (const backend of ['wasm', 'cpu']) {
      const [batch, second] = await on(backend, () =>
        tf.tidy(() => {
          const x = tf.reshape(tf.range(0, 2 * 4 * 4), [2, 4, 4, 1]);
          const dy = tf.reshape(tf.range(0, 2 * 8 * 8), [2, 8, 8, 1]);
          const attrs = { alignCorners: false, halfPixelCenters: false };
          const both = tf
            .engine()
            .runKernel('ResizeNearestNeighborGrad', { images: x, dy }, attrs) as tf.Tensor;
          const one = tf.engine().runKernel(
            'ResizeNearestNeighborGrad',
            {
              images: tf.slice(x, [1, 0, 0, 0], [1, -1, -1, -1]),
              dy: tf.slice(dy, [1, 0, 0, 0], [1, -1, -1, -1]),
            },
            attrs,
          ) as tf.Tensor;
          return [both.dataSync().slice(16), one.dataSync()];
        }),
      );
      expect(Array.from(batch)).toEqual(Array.from(second));
      // Each input pixel of the second image collects its 2×2 block: (64 + 2·8·r + 2c)·4 + 18.
      expect(second[0]).toBe(64 * 4 + 18);
    }
  });

  it('batch norm in training: the gradient equals that of the same formula in plain ops', async () => {
    const grads = (fused: boolean) =>
      tf.tidy(() => {
        const x = tf.add(wave([2, 3, 3, 4], 0.31), 0.2);
        const gamma = tf.tensor1d([0.5, 1, 1.5, 2]);
        const beta = tf.tensor1d([0.1, 0, -0.1, 0.3]);
        const w = wave([2, 3, 3, 4], 0.77);
        const f = (xi: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
          const { mean, variance } = tf.moments(xi, [0, 1, 2]);
          const y = fused
            ? tf.batchNorm(xi, mean, variance, b as tf.Tensor1D, g as tf.Tensor1D, 1e-3)
            : tf.add(tf.mul(tf.div(tf.sub(xi, mean), tf.sqrt(tf.add(variance, 1e-3))), g), b);
          return tf.sum(tf.mul(y, w));
        };
        return tf
          .grads(f)([x, gamma, beta])
          .map((t) => t.dataSync());
      });
    for (const backend of ['wasm', 'cpu']) {
      const [fused, plain] = await on(backend, () => [grads(true), grads(false)]);
      for (let i = 0; i < 3; i++) expect(maxDiff(fused[i]!, plain[i]!)).toBeLessThan(1e-4);
    }
  });
});

describe('a whole ResNet50V2-FPN', () => {
  it('has the same gradients on wasm as on cpu, and training steps leak no tensor', async () => {
    const size = 96;
    const run = () => {
      const model = buildArchitecture('resnet50v2-fpn', { width: 1 / 16, inputSize: size });
      model.trainableWeights.forEach((w, i) => {
        const v = w.read();
        const fanIn = v.shape.length > 1 ? v.size / (v.shape[v.shape.length - 1] ?? 1) : 1;
        const scale = v.shape.length > 1 ? Math.sqrt(3 / fanIn) : 0.05;
        w.write(tf.tidy(() => tf.mul(wave(v.shape, 0.37 + i * 0.01), scale)));
      });
      const x = tf.tidy(() => tf.mul(tf.add(wave([3, size, size, 1], 0.013), 1), 500));
      const y = tf.oneHot([0, 1, 0], 2);
      const loss = () => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: false }) as tf.Tensor);
      const { value, grads } = tf.variableGrads(loss as () => tf.Scalar);
      const out = Object.values(grads).map((g) => g.dataSync());
      value.dispose();
      tf.dispose(Object.values(grads));
      // Two optimiser steps: the tensor count after the second equals that after the first.
      const opt = tf.train.sgd(1e-3);
      const counts: number[] = [];
      for (let s = 0; s < 2; s++) {
        tf.dispose(opt.minimize(loss as () => tf.Scalar, true) ?? []);
        counts.push(tf.memory().numTensors);
      }
      tf.dispose([x, y]);
      model.dispose();
      opt.dispose();
      return { out, counts };
    };
    const wasm = await on('wasm', run);
    const cpu = await on('cpu', run);
    expect(wasm.counts[1]).toBe(wasm.counts[0]);
    let compared = 0;
    wasm.out.forEach((g, i) => {
      const ref = cpu.out[i]!;
      const scale = Math.max(...Array.from(ref, Math.abs));
      // Gradients this small are rounding noise in both backends.
      if (scale < 1e-9) return;
      compared++;
      expect(maxDiff(g, ref) / scale, `gradient ${i}`).toBeLessThan(2e-2);
    });
    expect(compared).toBeGreaterThan(100);
  }, 120_000);
});
