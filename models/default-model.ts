/**
 * Where covidct's default classifier lives, and the one message when it is missing. No tfjs here:
 * the command line checks this before paying for TensorFlow.js start-up.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InputError } from '../core/errors.js';

/** The default model's folder, relative to the package root (shipped by the training issue). */
export const DEFAULT_MODEL_SUBDIR = join('models', 'default');

/** Same as `MODEL_JSON` of models/io.ts, repeated so that this module does not load tfjs. */
const MODEL_JSON_NAME = 'model.json';

/** No `--model` was given and no default weights are installed: never fall back to random weights. */
export class NoDefaultModelError extends InputError {
  override name = 'NoDefaultModelError';
  constructor() {
    super(
      'no default model installed yet',
      'pass --model DIR (a folder from `covidct import-keras` or `covidct train`)',
    );
  }
}

/**
 * The package root: the nearest folder upwards holding covidct's package.json. Found by walking up
 * from this module, so it is the same from `dist/models/` and from the sources under vitest.
 */
export function packageRoot(from: string = import.meta.dirname): string {
  let dir = from;
  for (;;) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) {
      try {
        if ((JSON.parse(readFileSync(candidate, 'utf8')) as { name?: unknown }).name === 'covidct')
          return dir;
      } catch {
        // An unreadable package.json further down (a fixture) is not ours; keep walking.
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`covidct's package.json not found above ${from}`);
    dir = parent;
  }
}

/** The default model folder (it may not exist yet). */
export function defaultModelDir(): string {
  return join(packageRoot(), DEFAULT_MODEL_SUBDIR);
}

/**
 * The model folder to use: `given` when set, else the default one when it is installed; otherwise
 * a {@link NoDefaultModelError}. `defaultDir` is for tests.
 */
export function resolveModelDir(given: string | undefined, defaultDir: string = defaultModelDir()): string {
  if (given !== undefined) return given;
  if (!existsSync(join(defaultDir, MODEL_JSON_NAME))) throw new NoDefaultModelError();
  return defaultDir;
}
