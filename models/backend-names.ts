/**
 * covidct's backend names, apart from models/backend.ts so the command line can name them in its
 * help without loading TensorFlow.js.
 */

/** covidct's names for the backends, in preference order (see models/backend.ts). */
export const BACKENDS = ['gpu', 'ort', 'node', 'wasm', 'cpu'] as const;

/** A backend name. */
export type BackendName = (typeof BACKENDS)[number];

/** The backends that are TensorFlow.js backends (all but ONNX Runtime). */
export type TfBackendName = Exclude<BackendName, 'ort'>;

/** Whether `name` is a backend name. */
export function isBackendName(name: string): name is BackendName {
  return (BACKENDS as readonly string[]).includes(name);
}

/** The `--backend` option's help: `force a backend: gpu, ort, node, wasm or cpu`. */
export const BACKEND_OPTION_HELP = `force a backend: ${BACKENDS.slice(0, -1).join(', ')} or ${BACKENDS.at(-1)}`;
