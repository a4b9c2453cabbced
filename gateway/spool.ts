/**
 * Where the SCP writes what it receives: a received CT instance goes, as its bytes arrive, into a
 * spool file (mode 0600, synced before the stream reports finish) behind a Part 10 head; instances
 * of other SOP classes go nowhere. A spool file is removed when its instance is refused or its
 * association ends unanswered.
 */
import { type FileHandle, open, rm } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { describeError } from '../core/errors.js';
import type { GatewayLog } from './log.js';

/** Instances up to this size are collected in memory and written with one call. */
const IN_MEMORY_BYTES = 16 * 1024 * 1024;

/**
 * A received instance's file, mode 0600, synced before the stream reports finish. The data set's
 * fragments (one per PDU, 16 KiB from many senders) are collected and written with one call: an
 * awaited write per fragment made receiving several times slower. Beyond {@link IN_MEMORY_BYTES}
 * (large multi-frame objects) what was collected is written out and collecting starts again.
 */
export class SyncedFile extends Writable {
  private handle: Promise<FileHandle> | undefined;
  private chunks: Buffer[];
  private collected: number;
  private spilled = false;
  /** Why the file could not be written, if it could not (C-STORE then answers with a failure). */
  failed: Error | undefined;

  constructor(
    readonly path: string,
    head: Uint8Array,
  ) {
    super();
    this.chunks = [Buffer.from(head.buffer, head.byteOffset, head.byteLength)];
    this.collected = head.length;
  }

  /** The whole file, when it was small enough to stay in memory (read it instead of the disk). */
  get bytes(): Buffer | undefined {
    return this.spilled || this.failed ? undefined : Buffer.concat(this.chunks, this.collected);
  }

  private async flush(): Promise<FileHandle> {
    this.handle ??= open(this.path, 'wx', 0o600);
    const h = await this.handle;
    const chunks = this.chunks;
    if (this.spilled) {
      this.chunks = [];
      this.collected = 0;
    }
    await h.writev(chunks);
    return h;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (this.failed) {
      done();
      return;
    }
    this.chunks.push(chunk);
    this.collected += chunk.length;
    if (this.collected < IN_MEMORY_BYTES) {
      done();
      return;
    }
    this.spilled = true;
    this.flush().then(
      () => done(),
      (error: Error) => this.fail(error, done),
    );
  }

  override _final(done: (error?: Error | null) => void): void {
    if (this.failed) {
      done();
      return;
    }
    this.flush()
      .then(async (h) => {
        // The data and the size (what reading it back needs), not the times: fdatasync.
        await h.datasync();
        await h.close();
      })
      .then(
        () => done(),
        (error: Error) => this.fail(error, done),
      );
  }

  private fail(error: Error, done: () => void): void {
    this.failed ??= error;
    this.chunks = [];
    void this.abandon();
    // Swallowed here so the stream still finishes: the C-STORE then answers with a failure status.
    done();
  }

  /** Close the file if it was opened (an association that ended mid-instance, a failed write). */
  async abandon(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    this.chunks = [];
    if (handle) await handle.then((h) => h.close()).catch(() => undefined);
  }
}

/** Discards what it is given (instances of SOP classes the gateway does not analyse). */
export class Discard extends Writable {
  override _write(_chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    done();
  }
}

/** Remove a spool file; a failure (read-only disk, permissions) is logged, never thrown. */
export function discardFile(path: string, log: GatewayLog): Promise<void> {
  return rm(path, { force: true }).catch((error: unknown) =>
    log.warn('spool file not removed', { error: describeError(error, { className: false }) }),
  );
}
