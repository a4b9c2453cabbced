/**
 * The one place that chooses where slices are classified: tfjs-node-gpu if it loads (a GPU), else
 * ONNX Runtime on the CPU (models/onnx/runtime.ts), else tfjs-node, else wasm, else the pure-JS cpu
 * backend. `COVIDCT_BACKEND=gpu|ort|node|wasm|cpu` (or the `prefer` option) forces one; the choice
 * is logged once on stderr.
 *
 * TensorFlow.js is started in every case, since gradients (Grad-CAM, training) and building models
 * need it: with ONNX Runtime chosen, on the best tfjs CPU backend that loads (node, wasm, cpu).
 */

import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { enableProdMode, getBackend, ready, setBackend } from '@tensorflow/tfjs-core';
import { describeError, InputError } from '../core/errors.js';
import { BACKENDS, type BackendName, isBackendName, type TfBackendName } from './backend-names.js';

export { BACKENDS, type BackendName, isBackendName, type TfBackendName };

/** The TensorFlow.js backends that run beside ONNX Runtime, in preference order. */
const TF_CPU_BACKENDS = ['node', 'wasm', 'cpu'] as const satisfies readonly TfBackendName[];

/** What {@link initBackend} settled on. */
export interface BackendChoice {
  /** covidct's name for where slices are classified. */
  readonly name: BackendName;
  /** covidct's name for the TensorFlow.js backend (gradients, training): `name` unless that is `ort`. */
  readonly tf: TfBackendName;
  /** tfjs's backend name (`tensorflow`, `wasm`, `cpu`). */
  readonly tfBackend: string;
  /** Why the more preferred backends were passed over, one entry each. */
  readonly skipped: readonly string[];
}

/** Options of {@link initBackend}. */
export interface BackendOptions {
  /** Force a backend; default `COVIDCT_BACKEND`, else automatic. */
  readonly prefer?: BackendName;
  /** Where the one-line choice goes; default stderr. */
  readonly log?: (line: string) => void;
}

/** The wanted backend is unknown or cannot be loaded (a setting the user can change). */
export class BackendError extends InputError {
  override name = 'BackendError';
}

/**
 * A `--backend` option's value as a backend name (case and spaces ignored); `undefined` when the
 * option was not given or is `auto` (as `COVIDCT_BACKEND` takes it). Anything else is a one-line
 * {@link BackendError} naming the option.
 */
export function parseBackendOption(name: string | undefined): BackendName | undefined {
  if (name === undefined) return undefined;
  const value = name.trim().toLowerCase();
  if (value === 'auto') return undefined;
  if (!isBackendName(value)) {
    throw new BackendError(
      '--backend',
      `'${name}' is not a backend: expected one of ${BACKENDS.join(', ')} or auto`,
    );
  }
  return value;
}

// Module specifiers in variables: the optional packages are absent on most machines, and TypeScript
// must not try to resolve them.
const NODE_GPU_PACKAGE = '@tensorflow/tfjs-node-gpu';
const NODE_PACKAGE = '@tensorflow/tfjs-node';

async function tryNode(pkg: string): Promise<void> {
  await import(pkg);
  // tfjs-node registers the `tensorflow` backend with the shared tfjs-core engine on import.
  if (!(await setBackend('tensorflow')))
    throw new Error(`${pkg} loaded but the tensorflow backend did not initialise`);
}

/**
 * Point the wasm backend at its .wasm files inside node_modules: resolved from this module, so it
 * works the same from `dist/` and from sources under vitest.
 */
async function tryWasm(): Promise<void> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  const require = createRequire(import.meta.url);
  const main = require.resolve('@tensorflow/tfjs-backend-wasm');
  wasm.setWasmPaths(`${dirname(main)}/`);
  if (!(await setBackend('wasm'))) throw new Error('the wasm backend did not initialise');
}

async function tryCpu(): Promise<void> {
  await import('@tensorflow/tfjs-backend-cpu');
  if (!(await setBackend('cpu'))) throw new Error('the cpu backend did not initialise');
}

const LOADERS: Record<TfBackendName, () => Promise<void>> = {
  gpu: () => tryNode(NODE_GPU_PACKAGE),
  node: () => tryNode(NODE_PACKAGE),
  wasm: tryWasm,
  cpu: tryCpu,
};

let chosen: Promise<BackendChoice> | undefined;

/** The forced backend from `COVIDCT_BACKEND`, if any; throws on an unknown name. */
export function backendFromEnv(env: NodeJS.ProcessEnv = process.env): BackendName | undefined {
  const value = env.COVIDCT_BACKEND?.trim().toLowerCase();
  if (value === undefined || value === '' || value === 'auto') return undefined;
  if (!isBackendName(value)) {
    throw new BackendError(
      'COVIDCT_BACKEND',
      `'${value}' is not a backend: expected one of ${BACKENDS.join(', ')} or auto`,
    );
  }
  return value;
}

/** A short reason a backend did not load: most often its optional package is simply absent. */
function whyNot(error: unknown): string {
  if ((error as NodeJS.ErrnoException | undefined)?.code === 'ERR_MODULE_NOT_FOUND') return 'not installed';
  return describeError(error, { className: false });
}

/** Load the first of `names` that loads; `skipped` collects why the others did not. */
async function firstTfBackend(
  names: readonly TfBackendName[],
  skipped: string[],
): Promise<TfBackendName | undefined> {
  for (const name of names) {
    try {
      await LOADERS[name]();
      await ready();
      return name;
    } catch (error) {
      skipped.push(`${name}: ${whyNot(error)}`);
    }
  }
  return undefined;
}

/** Load ONNX Runtime's native library (absent on platforms it does not ship for). */
async function tryOrt(): Promise<void> {
  const { loadOnnxRuntime } = await import('./onnx/runtime.js');
  await loadOnnxRuntime();
}

async function choose(options: BackendOptions): Promise<BackendChoice> {
  const forced = options.prefer ?? backendFromEnv();
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const candidates = forced === undefined ? BACKENDS : [forced];
  const skipped: string[] = [];
  // Production mode: no debug checks, and no "install tfjs-node" banner on the cpu backend.
  enableProdMode();
  for (const name of candidates) {
    let tf: TfBackendName | undefined;
    if (name === 'ort') {
      try {
        await tryOrt();
      } catch (error) {
        skipped.push(`ort: ${whyNot(error)}`);
        continue;
      }
      // Gradients and model building still need a tfjs backend; its misses are not ONNX Runtime's.
      const tfSkipped: string[] = [];
      tf = await firstTfBackend(TF_CPU_BACKENDS, tfSkipped);
      if (tf === undefined) {
        skipped.push(`ort: no TensorFlow.js backend beside it (${tfSkipped.join('; ')})`);
        continue;
      }
    } else {
      tf = await firstTfBackend([name], skipped);
      if (tf === undefined) continue;
    }
    const choice: BackendChoice = { name, tf, tfBackend: getBackend(), skipped };
    log(
      `covidct: backend ${name}${name === tf ? '' : ` (gradients on ${tf})`}${forced === undefined ? '' : ' (forced)'}${skipped.length > 0 ? ` (${skipped.join('; ')})` : ''}`,
    );
    return choice;
  }
  throw new BackendError(
    forced === undefined ? 'backend' : `backend ${forced}`,
    `no backend could be loaded (${skipped.join('; ')})`,
  );
}

/**
 * Choose and activate the backend once per process (later calls return the first choice, whatever
 * their options). A forced backend that fails to load is an error rather than a silent fallback.
 */
export function initBackend(options: BackendOptions = {}): Promise<BackendChoice> {
  chosen ??= choose(options).catch((error: unknown) => {
    chosen = undefined;
    throw error;
  });
  return chosen;
}
