/**
 * Reading a whole local file whose failure the user must be able to act on: the one place that
 * turns a file-system error into core/errors.ts's one-line {@link FileSystemError}.
 */
import { readFile } from 'node:fs/promises';
import { fileSystemError } from './errors.js';

/** The bytes of `path`; a file-system error becomes a one-line error naming the file. */
export async function readLocalFile(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw fileSystemError(path, error);
  }
}
