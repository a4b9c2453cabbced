/**
 * Each model folder's ONNX graph, exported once into a cache folder keyed by what the export reads
 * ({@link onnxCacheKey}) and the exporter's version, written by atomic rename.
 * Never into the model folder: it may be read-only, or tracked by git.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { writePrivateFile } from '../../core/deidentify.js';
import { describeError, FileSystemError, fileSystemError } from '../../core/errors.js';
import { MANIFEST_JSON, modelFolderSha256 } from '../io.js';
import { exportOnnx, ONNX_EXPORT_VERSION } from './export.js';

/** The cache folder: `COVIDCT_CACHE_DIR`, else `$XDG_CACHE_HOME/covidct`, else `~/.cache/covidct`; then `onnx/`. */
export function onnxCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.COVIDCT_CACHE_DIR || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'covidct');
  return join(base, 'onnx');
}

/**
 * The cache key of a model folder: SHA-256 of the model's own hash (model.json and its weight files,
 * {@link modelFolderSha256}, the hash in every result's model id) and manifest.json, which decides
 * how a seeded folder is materialised: everything the export reads. `modelSha256` skips re-hashing
 * the weights when the caller has it already.
 */
export async function onnxCacheKey(modelDir: string, modelSha256?: string): Promise<string> {
  const model = modelSha256 ?? (await modelFolderSha256(modelDir));
  let manifest: Buffer = Buffer.alloc(0);
  try {
    manifest = await readFile(join(modelDir, MANIFEST_JSON));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
      throw fileSystemError(join(modelDir, MANIFEST_JSON), error);
  }
  return createHash('sha256').update(`${model}\u0000`).update(manifest).digest('hex');
}

/** Options of {@link cachedOnnx}. */
export interface CachedOnnxOptions {
  /**
   * Called, in one line, when the cache cannot be written; the graph's bytes are then returned
   * instead of a path. Without it, such a failure is a {@link FileSystemError} naming the cache.
   */
  readonly onCacheError?: (line: string) => void;
  /** The model's {@link modelFolderSha256}, when the caller has it (the classifier's `sha256`). */
  readonly modelSha256?: string;
}

/** Where {@link cachedOnnx} left the graph: a cached file, or only bytes when the cache could not be written. */
export type CachedGraph =
  | { readonly path: string; readonly sha256: string; readonly exported: boolean }
  | { readonly bytes: Uint8Array; readonly sha256: string; readonly exported: true };

/**
 * The path of `modelDir`'s ONNX graph in `cacheDir` (`<sha256>.v<exporter version>.onnx`), exporting
 * it first when it is not there yet. Concurrent callers may both export; each renames a complete
 * file into place.
 */
export async function cachedOnnx(
  modelDir: string,
  cacheDir?: string,
): Promise<{ path: string; sha256: string; exported: boolean }>;
export async function cachedOnnx(
  modelDir: string,
  cacheDir: string | undefined,
  options: CachedOnnxOptions,
): Promise<CachedGraph>;
export async function cachedOnnx(
  modelDir: string,
  cacheDir = onnxCacheDir(),
  options: CachedOnnxOptions = {},
): Promise<CachedGraph> {
  const sha256 = await onnxCacheKey(modelDir, options.modelSha256);
  const path = join(cacheDir, `${sha256}.v${ONNX_EXPORT_VERSION}.onnx`);
  try {
    await (await open(path, 'r')).close();
    return { path, sha256, exported: false };
  } catch {
    // Not cached yet.
  }
  const bytes = await exportOnnx(modelDir);
  try {
    try {
      await mkdir(cacheDir, { recursive: true });
    } catch (error) {
      throw fileSystemError(cacheDir, error);
    }
    await writePrivateFile(path, bytes, 0o644);
  } catch (error) {
    if (options.onCacheError === undefined || !(error instanceof FileSystemError)) throw error;
    // A read-only home or a wrong COVIDCT_CACHE_DIR costs an export per run, not the classification.
    options.onCacheError(
      `covidct: ${describeError(error)}; the ONNX graph is not cached (set COVIDCT_CACHE_DIR to a writable folder)`,
    );
    return { bytes, sha256, exported: true };
  }
  return { path, sha256, exported: true };
}
