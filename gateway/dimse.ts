/**
 * DICOM networking of the gateway, over dcmjs-dimse (DIMSE and association handling are the
 * library's; nothing here encodes a PDU):
 *
 * - {@link startStoreScp}: a C-ECHO and C-STORE SCP. A CT image's data set is streamed, as it
 *   arrives and in the transfer syntax it came in, into a file behind a Part 10 head (the received
 *   bytes are never decoded and re-encoded, so pixel data and every text value stay as the
 *   scanner wrote them), synced to disk, and handed to the caller, which makes it durable in the
 *   study before C-STORE answers success. Other storage SOP classes are accepted and discarded
 *   (PACS routing rules send whole studies; refusing makes them fail and retry), or refused.
 * - {@link storeInstances}: a C-STORE SCU that sends Part 10 files written by covidct (explicit VR
 *   little endian) as their bytes, converting to implicit VR at the byte level when the receiver
 *   accepts only that: dcmjs would re-encode text values as UTF-8, which breaks names in
 *   ISO 2022 IR 87 and other character sets.
 * - The library's own logging (about a thousand INFO lines per association) goes to the gateway's
 *   log at warning level and above.
 */
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { isIP, type Server as NetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type * as Dimse from 'dcmjs-dimse';
import {
  COVIDCT_IMPLEMENTATION_UID,
  COVIDCT_IMPLEMENTATION_VERSION,
  EXPLICIT_VR_LITTLE_ENDIAN,
  encodeFileHead,
} from '../core/dicom/encode.js';
import { explicitToImplicitLittleEndian, part10DataSet } from '../core/dicom/implicit.js';
import { CT_IMAGE_STORAGE_UID } from '../core/dicom/profile.js';
import { IMPLICIT_VR_LE, transferSyntax } from '../core/dicom/syntax.js';
import { InputError } from '../core/errors.js';
import type { GatewayLog } from './log.js';

// dcmjs-dimse is a CommonJS bundle whose exports Node's ESM loader cannot see by name.
const dimse = createRequire(import.meta.url)('dcmjs-dimse') as typeof Dimse;
const { Client, Dataset, Implementation, Scp, Server } = dimse;
const { CStoreRequest } = dimse.requests;
const { CEchoResponse, CStoreResponse } = dimse.responses;
const { PresentationContextResult, RejectReason, RejectResult, RejectSource, Status } = dimse.constants;

/** The Verification SOP class (C-ECHO). */
export const VERIFICATION_SOP_CLASS = '1.2.840.10008.1.1';
/** Storage SOP classes share this root (PS3.4 Annex B). */
const STORAGE_ROOT = '1.2.840.10008.5.1.4.1.1.';

/** C-STORE status: refused, out of resources (PS3.4 Table B.2-1). */
export const STATUS_OUT_OF_RESOURCES = 0xa700;
/** C-STORE status: error, cannot understand. */
export const STATUS_CANNOT_UNDERSTAND = 0xc000;

/** Transfer syntaxes whose CT images covidct reads (all but the ones it names unsupported). */
export function readableTransferSyntax(uid: string): boolean {
  return transferSyntax(uid).encoding !== 'unsupported';
}

/** A caller the SCP accepts: its calling AE title, and optionally the host it must come from. */
export interface AllowedCaller {
  readonly aeTitle: string;
  /** An IP address; absent: any host. */
  readonly host?: string;
}

/** A C-STORE destination. */
export interface DicomPeer {
  readonly aeTitle: string;
  readonly host: string;
  readonly port: number;
}

const AE_TITLE = /^[\x21-\x5b\x5d-\x7e](?:[\x20-\x5b\x5d-\x7e]{0,14}[\x21-\x5b\x5d-\x7e])?$/;

/** Check an AE title (1–16 characters, no backslash or control characters, no leading or trailing space). */
export function checkAeTitle(what: string, aeTitle: string): string {
  if (!AE_TITLE.test(aeTitle)) {
    throw new InputError(
      what,
      `'${aeTitle}' is not an AE title (1 to 16 printable characters, no backslash)`,
    );
  }
  return aeTitle;
}

/** `AE` or `AE@HOST` (`--allow-caller`). */
export function parseAllowedCaller(text: string): AllowedCaller {
  const at = text.lastIndexOf('@');
  const aeTitle = checkAeTitle('--allow-caller', at < 0 ? text : text.slice(0, at));
  if (at < 0) return { aeTitle };
  const host = text.slice(at + 1);
  // Compared with the socket's peer address: a host name would never match.
  if (isIP(host) === 0)
    throw new InputError('--allow-caller', `'${text}': expected AE or AE@IP (an IP address)`);
  return { aeTitle, host };
}

/** `AE@HOST:PORT` (`--destination`). */
export function parseDestination(text: string): DicomPeer {
  const match = /^(.+)@(.+):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port < 1 || port > 65535) {
    throw new InputError('--destination', `'${text}': expected AE@HOST:PORT`);
  }
  return { aeTitle: checkAeTitle('--destination', match[1]!), host: match[2]!, port };
}

/** An IPv4 address as Node gives it for a dual-stack socket (`::ffff:10.0.0.5`) → `10.0.0.5`. */
function plainAddress(address: string | undefined): string {
  return (address ?? '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
}

/** Whether `caller` from `address` is allowed. */
export function isAllowed(
  allow: readonly AllowedCaller[],
  aeTitle: string,
  address: string | undefined,
): boolean {
  const from = plainAddress(address);
  return allow.some((a) => a.aeTitle === aeTitle && (a.host === undefined || plainAddress(a.host) === from));
}

/**
 * Set up dcmjs-dimse for the gateway: associations name covidct (its implementation class UID and
 * version, as in the files it writes), and the library's log (loglevel) goes to `log`, warnings
 * and errors only, one line each.
 */
export function setUpDimse(log: GatewayLog): void {
  Implementation.setImplementationClassUid(COVIDCT_IMPLEMENTATION_UID);
  Implementation.setImplementationVersion(COVIDCT_IMPLEMENTATION_VERSION);
  const lib = dimse.log as unknown as {
    methodFactory: (method: string, level: number, name: unknown) => (...args: unknown[]) => void;
    setLevel(level: string, persist?: boolean): void;
  };
  lib.methodFactory =
    (method) =>
    (...args) => {
      if (method !== 'warn' && method !== 'error') return;
      // Not 'message': Powertools reserves that key and drops it.
      log.warn('dcmjs-dimse', { detail: args.map(String).join(' ').split('\n')[0]!.slice(0, 300) });
    };
  lib.setLevel('warn', false);
}

/** An instance received and synced to disk, before C-STORE answers. */
export interface ReceivedInstance {
  /** The Part 10 file: a covidct head, then the data set as it came over the network. */
  readonly path: string;
  /** The file's bytes, when the instance was small enough to keep in memory. */
  readonly bytes?: Uint8Array;
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly transferSyntaxUid: string;
  readonly callingAeTitle: string;
  /** Counts associations since the SCP started; names one in the log. */
  readonly association: number;
}

/** What became of a received instance: C-STORE answers success for `stored`, else a failure status. */
export type StoreVerdict =
  | { readonly stored: true }
  | { readonly stored: false; readonly status: number; readonly reason: string };

/** Options of {@link startStoreScp}. */
export interface StoreScpOptions {
  /** TCP port; 0 picks a free one ({@link StoreScp.port} tells which). */
  readonly port: number;
  /** The SCP's AE title: associations calling another are rejected. */
  readonly aeTitle: string;
  readonly allow: readonly AllowedCaller[];
  /** Where received files are written before `accept` takes them (on the state's file system). */
  readonly incomingDir: string;
  /** Refuse storage SOP classes other than CT Image Storage at association. @default false (accept and discard) */
  readonly refuseOtherSopClasses?: boolean;
  /** Make a received file durable (move it into its study) or refuse it; C-STORE waits for it. */
  readonly accept: (instance: ReceivedInstance) => Promise<StoreVerdict>;
  readonly log: GatewayLog;
}

/** A running SCP. */
export interface StoreScp {
  readonly port: number;
  /** Stop listening and drop open associations (what they had not been answered for, they send again). */
  close(): void;
}

/** Instances up to this size are collected in memory and written with one call. */
const IN_MEMORY_BYTES = 16 * 1024 * 1024;

/**
 * A received instance's file, mode 0600, synced before the stream reports finish. The data set's
 * fragments (one per PDU, 16 KiB from many senders) are collected and written with one call: an
 * awaited write per fragment made receiving several times slower. Beyond {@link IN_MEMORY_BYTES}
 * (large multi-frame objects) what was collected is written out and collecting starts again.
 */
class SyncedFile extends Writable {
  private handle: Promise<FileHandle> | undefined;
  private chunks: Buffer[];
  private collected: number;
  private spilled = false;
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
class Discard extends Writable {
  override _write(_chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    done();
  }
}

/** Remove a spool file; a failure (read-only disk, permissions) is logged, never thrown. */
function discardFile(path: string, log: GatewayLog): Promise<void> {
  return rm(path, { force: true }).catch((error: Error) =>
    log.warn('spool file not removed', { error: error.message }),
  );
}

/** Start the SCP. Resolves once it listens. */
export function startStoreScp(options: StoreScpOptions): Promise<StoreScp> {
  const { log } = options;
  let associations = 0;

  class GatewayScp extends Scp {
    private association: Dimse.association.Association | undefined;
    private readonly id = ++associations;
    /** Each C-STORE request's file and the transfer syntax its data set came in. */
    private readonly files = new WeakMap<object, { file: SyncedFile | Discard; syntax: string }>();
    private readonly open = new Set<SyncedFile>();
    /** What this association's C-STOREs came to, logged when it closes. */
    private readonly counts = { stored: 0, discarded: 0, refused: 0 };

    constructor(socket: never, opts: never) {
      super(socket, opts);
      this.on('close', () => {
        // A file whose C-STORE was never answered: the sender sends it again.
        for (const f of this.open) void f.abandon().then(() => discardFile(f.path, log));
        if (this.association !== undefined)
          log.info('association closed', { association: this.id, ...this.counts });
      });
    }

    private get remote(): string {
      return plainAddress((this as unknown as { socket: { remoteAddress?: string } }).socket.remoteAddress);
    }

    override associationRequested(association: Dimse.association.Association): void {
      this.association = association;
      const calling = association.getCallingAeTitle();
      const called = association.getCalledAeTitle();
      if (called !== options.aeTitle) {
        log.warn('association rejected: called AE title is not ours', {
          association: this.id,
          called,
          calling,
        });
        this.sendAssociationReject(
          RejectResult.Permanent,
          RejectSource.ServiceUser,
          RejectReason.CalledAeNotRecognized,
        );
        return;
      }
      if (!isAllowed(options.allow, calling, this.remote)) {
        log.warn('association rejected: caller not allowed', {
          association: this.id,
          calling,
          host: this.remote,
        });
        this.sendAssociationReject(
          RejectResult.Permanent,
          RejectSource.ServiceUser,
          RejectReason.CallingAeNotRecognized,
        );
        return;
      }
      for (const { id } of association.getPresentationContexts()) {
        const context = association.getPresentationContext(id);
        const sopClass = context.getAbstractSyntaxUid();
        const offered = context.getTransferSyntaxUids();
        let chosen: string | undefined;
        if (sopClass === VERIFICATION_SOP_CLASS) chosen = offered[0];
        else if (sopClass === CT_IMAGE_STORAGE_UID) chosen = offered.find(readableTransferSyntax);
        else if (sopClass.startsWith(STORAGE_ROOT) && !options.refuseOtherSopClasses) chosen = offered[0];
        else {
          context.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
          continue;
        }
        if (chosen === undefined)
          context.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
        else context.setResult(PresentationContextResult.Accept, chosen);
      }
      log.info('association accepted', { association: this.id, calling, host: this.remote });
      this.sendAssociationAccept();
    }

    override associationReleaseRequested(): void {
      this.sendAssociationReleaseResponse();
    }

    override abort(): void {
      // The caller gave up the association and waits for the connection to close (DCMTK for 30 s):
      // dcmjs-dimse leaves it open. Closing it also drops the files of unanswered C-STOREs.
      log.info('association aborted by the caller', { association: this.id });
      (this as unknown as { socket: Socket }).socket.end();
    }

    override cEchoRequest(
      request: Dimse.requests.CEchoRequest,
      callback: (r: Dimse.responses.CEchoResponse) => void,
    ) {
      const response = CEchoResponse.fromRequest(request);
      response.setStatus(Status.Success);
      callback(response);
    }

    override createStoreWritableStream(
      context: Dimse.association.PresentationContext,
      request: Dimse.requests.CStoreRequest,
    ): Writable {
      if (request.getAffectedSopClassUid() !== CT_IMAGE_STORAGE_UID) {
        const discard = new Discard();
        this.files.set(request, { file: discard, syntax: '' });
        return discard;
      }
      const path = join(options.incomingDir, `.rx-${randomBytes(12).toString('hex')}.part`);
      const syntax = context.getAcceptedTransferSyntaxUid() ?? IMPLICIT_VR_LE;
      const callingAe = this.association?.getCallingAeTitle();
      const head = encodeFileHead({
        sopClassUid: request.getAffectedSopClassUid(),
        sopInstanceUid: request.getAffectedSopInstanceUid(),
        transferSyntaxUid: syntax,
        ...(callingAe === undefined ? {} : { sourceAeTitle: callingAe }),
      });
      const file = new SyncedFile(path, head);
      this.files.set(request, { file, syntax });
      this.open.add(file);
      return file;
    }

    override createDatasetFromStoreWritableStream(
      writable: Writable,
      context: Dimse.association.PresentationContext,
      callback: (dataset: Dimse.Dataset) => void,
    ): void {
      // The data set stays in the file; C-STORE is answered from it once it is synced.
      const done = () => callback(new Dataset({}, context.getAcceptedTransferSyntaxUid()));
      if (writable.writableFinished) done();
      else writable.once('finish', done);
    }

    override cStoreRequest(
      request: Dimse.requests.CStoreRequest,
      callback: (response: Dimse.responses.CStoreResponse) => void,
    ): void {
      const answer = (status: number, comment?: string) => {
        const response = CStoreResponse.fromRequest(request);
        response.setStatus(status);
        if (comment !== undefined) response.setErrorComment(comment.slice(0, 64));
        callback(response);
      };
      const { file, syntax } = this.files.get(request) ?? {};
      const sopClassUid = request.getAffectedSopClassUid();
      if (!(file instanceof SyncedFile)) {
        log.info('instance discarded: not a CT image', { association: this.id, sopClass: sopClassUid });
        this.counts.discarded++;
        answer(Status.Success);
        return;
      }
      this.open.delete(file);
      if (file.failed) {
        log.error('instance not stored: the spool cannot be written', {
          association: this.id,
          error: file.failed.message,
        });
        this.counts.refused++;
        void discardFile(file.path, log).then(() =>
          answer(STATUS_OUT_OF_RESOURCES, 'gateway spool cannot be written'),
        );
        return;
      }
      const bytes = file.bytes;
      options
        .accept({
          path: file.path,
          ...(bytes ? { bytes } : {}),
          sopClassUid,
          sopInstanceUid: request.getAffectedSopInstanceUid(),
          transferSyntaxUid: syntax ?? '',
          callingAeTitle: this.association?.getCallingAeTitle() ?? '',
          association: this.id,
        })
        .then(
          async (verdict) => {
            this.counts[verdict.stored ? 'stored' : 'refused']++;
            if (verdict.stored) answer(Status.Success);
            else {
              // Gone before the answer: a refused instance leaves nothing behind.
              await discardFile(file.path, log);
              answer(verdict.status, verdict.reason);
            }
          },
          async (error: Error) => {
            this.counts.refused++;
            log.error('instance not stored', { association: this.id, error: error.message });
            await discardFile(file.path, log);
            answer(STATUS_OUT_OF_RESOURCES, 'gateway could not store the instance');
          },
        );
    }
  }

  const server = new Server(GatewayScp);
  return new Promise((resolve, reject) => {
    server.once('networkError', (error: Error) =>
      reject(new InputError(`--port ${options.port}`, error.message)),
    );
    server.once('listening', () => {
      // dcmjs-dimse keeps its net.Server here; its address is the port actually bound (for port 0).
      const net = (server as unknown as { server: NetServer }).server;
      const address = net.address();
      server.on('networkError', (error: Error) => log.warn('network error', { error: error.message }));
      resolve({
        port: typeof address === 'object' && address ? address.port : options.port,
        close: () => server.close(),
      });
    });
    server.listen(options.port, { associationTimeout: 30_000, pduTimeout: 60_000 });
  });
}

/** A Part 10 file covidct wrote, to send. */
export interface OutgoingInstance {
  /** Part 10 bytes, explicit VR little endian (as core/dicom/result-objects.ts writes them). */
  readonly bytes: Uint8Array;
  /** Names the file in errors. */
  readonly name: string;
}

/** What {@link storeInstances} got back for one instance: the C-STORE status, or none if not sent. */
export interface StoreOutcome {
  readonly sopInstanceUid: string;
  /** The receiver's status; undefined when the instance was not sent (its presentation context was refused). */
  readonly status: number | undefined;
}

/** Delivery failed before any status came back (connection refused, association rejected, timeout). */
export class DeliveryError extends Error {
  override name = 'DeliveryError';
}

/**
 * Send `instances` over one association; resolves with each instance's C-STORE status (undefined
 * for one not answered). Rejects with a {@link DeliveryError} when the peer cannot be reached or
 * rejects the association. Once the association is up, a peer that stops answering for
 * `timeoutMs` (an idle time: each answer restarts it) or drops the connection ends the attempt
 * with the statuses answered so far, so what the peer stored is not sent again; the association is
 * aborted, not left sending in the background.
 */
export function storeInstances(
  peer: DicomPeer,
  callingAeTitle: string,
  instances: readonly OutgoingInstance[],
  timeoutMs = 60_000,
): Promise<StoreOutcome[]> {
  const client = new Client();
  const prepared = instances.map((instance) => {
    const parts = part10DataSet(instance.bytes, instance.name);
    if (parts.transferSyntaxUid !== EXPLICIT_VR_LITTLE_ENDIAN) {
      throw new InputError(instance.name, 'expected explicit VR little endian');
    }
    // Its elements are only the two UIDs C-STORE names; the data set's bytes are given as they are.
    const dataset = new Dataset(
      { SOPClassUID: parts.sopClassUid, SOPInstanceUID: parts.sopInstanceUid },
      EXPLICIT_VR_LITTLE_ENDIAN,
    );
    let implicit: Uint8Array | undefined;
    dataset.getDenaturalizedDataset = () => {
      if (dataset.getTransferSyntaxUid() === EXPLICIT_VR_LITTLE_ENDIAN) return Buffer.from(parts.dataSet);
      implicit ??= explicitToImplicitLittleEndian(parts.dataSet, instance.name);
      return Buffer.from(implicit);
    };
    const request = new CStoreRequest(dataset);
    const outcome: { sopInstanceUid: string; status: number | undefined } = {
      sopInstanceUid: parts.sopInstanceUid,
      status: undefined,
    };
    request.on('response', (response: Dimse.responses.CStoreResponse) => {
      outcome.status = response.getStatus();
    });
    client.addRequest(request);
    return { dataset, request, outcome };
  });
  return new Promise((resolve, reject) => {
    let settled = false;
    let accepted = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error && !accepted) {
        reject(error);
        return;
      }
      if (error) {
        // Stop the association: a retry opens a new one.
        try {
          client.abort(0, 0);
        } catch {
          // Already closed.
        }
      }
      resolve(prepared.map((p) => p.outcome));
    };
    const idle = () => {
      clearTimeout(timer);
      timer = setTimeout(() => finish(new DeliveryError(`no answer for ${timeoutMs / 1000} s`)), timeoutMs);
    };
    idle();
    for (const p of prepared) p.request.on('response', idle);
    client.on('associationAccepted', (association: Dimse.association.Association) => {
      accepted = true;
      idle();
      // Send each data set in the syntax the receiver chose: explicit VR as written, or implicit VR.
      for (const p of prepared) {
        const context = association.getAcceptedPresentationContextFromRequest(p.request);
        const syntax = context?.getAcceptedTransferSyntaxUid();
        if (syntax === IMPLICIT_VR_LE) p.dataset.setTransferSyntaxUid(IMPLICIT_VR_LE);
      }
    });
    client.on('associationRejected', (reject: { result: number; source: number; reason: number }) =>
      finish(
        new DeliveryError(
          `association rejected (result ${reject.result}, source ${reject.source}, reason ${reject.reason})`,
        ),
      ),
    );
    client.on('networkError', (error: Error) => finish(new DeliveryError(error.message)));
    client.on('closed', () => finish());
    client.send(peer.host, peer.port, callingAeTitle, peer.aeTitle, {
      connectTimeout: Math.min(timeoutMs, 15_000),
      associationTimeout: timeoutMs,
      pduTimeout: timeoutMs,
    });
  });
}
