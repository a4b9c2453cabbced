/**
 * The GPU worker's Dockerfile: pinned base images and tfjs-node-gpu, ONNX's schema where the
 * exporter reads it, and a clean parse by dockerfile-utils.
 */
import { readFileSync } from 'node:fs';
import { validate as validateDockerfile } from 'dockerfile-utils';
import { describe, expect, it } from 'vitest';

describe('the worker Dockerfile', () => {
  const text = readFileSync(new URL('../gpu-worker/Dockerfile', import.meta.url), 'utf8');
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    optionalDependencies: Record<string, string>;
  };
  it('pins its base images (CUDA 11 with cuDNN 8 for libtensorflow 2.9, Node 22) and tfjs-node-gpu to the lock', () => {
    const args = Object.fromEntries([...text.matchAll(/^ARG (\w+)=(\S+)$/gm)].map((m) => [m[1], m[2]]));
    expect(args.CUDA_IMAGE).toMatch(/^nvidia\/cuda:11\.8\.\d+-cudnn8-runtime-ubuntu22\.04$/);
    expect(args.NODE_IMAGE).toMatch(/^node:22\.\d+\.\d+-/);
    for (const from of text.matchAll(/^FROM (\S+)/gm)) {
      expect(from[1]).toMatch(/^\$\{(CUDA|NODE)_IMAGE\}$/);
    }
    expect(args.TFJS_NODE_GPU).toBe(pkg.optionalDependencies['@tensorflow/tfjs-node-gpu']);
    expect(args.TFJS_NODE_GPU).toBe('4.22.0');
    expect(text).toMatch(/^CMD \["node", "dist\/gpu-worker\/main\.js"\]$/m);
    expect(text).toMatch(/npm ci /);
  });

  it('carries ONNX’s schema where the exporter reads it (COVIDCT_BACKEND=ort on a CPU instance)', () => {
    const source = readFileSync(new URL('../models/onnx/protobuf.ts', import.meta.url), 'utf8');
    expect(source).toContain("join(packageRoot(), 'models', 'onnx', 'onnx.proto')");
    expect(text).toMatch(/^COPY --from=build \/app\/models\/onnx\/onnx\.proto models\/onnx\/onnx\.proto$/m);
    expect(text).toMatch(/^WORKDIR \/app$/m);
  });

  it('parses cleanly with dockerfile-utils (instructions, arguments, flags, ARG/FROM use)', () => {
    expect(validateDockerfile(text).map((d) => `${d.range.start.line + 1}: ${d.message}`)).toEqual([]);
    // The checker does report a broken file.
    expect(validateDockerfile('FROM\nRUNN x\nCOPY a\n').length).toBeGreaterThanOrEqual(3);
  });
});
