/**
 * `bench classify`'s independent baseline: bench/reference_onnx.py builds the paper's ResNet50V2-FPN
 * in PyTorch from the architecture's description (none of covidct's code) and exports it with
 * torch.onnx.export; the bench runs that graph in ONNX Runtime beside covidct's own export.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RESNET50V2_FPN_ARCH } from '../../models/resnet50v2-fpn/resnet50v2-fpn.js';
import type { ReferenceGraph } from './classify.js';
import { repoRoot, runPythonJson } from './common.js';

/** What bench/reference_onnx.py prints. */
interface ReferenceOnnxOutput {
  readonly path: string;
  readonly parameters: number;
  readonly nodes: number;
  readonly versions: Record<string, string>;
}

/**
 * A reference builder for {@link benchClassify}'s `reference` option: exports the PyTorch network
 * once per input size and width (into a temporary folder, removed at once) and keeps the bytes.
 * Only `resnet50v2-fpn` has a reference; for another architecture the builder throws a reason.
 */
export function pytorchReference(
  arch: string,
  python?: string,
): (build: { readonly inputSize: number; readonly width: number }) => Promise<ReferenceGraph> {
  const made = new Map<string, Promise<ReferenceGraph>>();
  return (build) => {
    if (arch !== RESNET50V2_FPN_ARCH) {
      return Promise.reject(
        new Error(`bench/reference_onnx.py builds ${RESNET50V2_FPN_ARCH} only, not ${arch}`),
      );
    }
    const key = `${build.inputSize}/${build.width}`;
    let graph = made.get(key);
    if (graph === undefined) {
      graph = exportReference(build.inputSize, build.width, python);
      made.set(key, graph);
    }
    return graph;
  };
}

async function exportReference(inputSize: number, width: number, python?: string): Promise<ReferenceGraph> {
  const dir = await mkdtemp(join(tmpdir(), 'covidct-reference-onnx-'));
  try {
    const out = join(dir, 'reference.onnx');
    const printed = await runPythonJson<ReferenceOnnxOutput>(
      join(repoRoot(), 'bench', 'reference_onnx.py'),
      [out, '--input-size', String(inputSize), '--width', String(width)],
      python,
    );
    return {
      name: 'pytorch-onnx',
      bytes: new Uint8Array(await readFile(out)),
      parameters: printed.parameters,
      nodes: printed.nodes,
      versions: printed.versions,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
