/**
 * The gateway's C-ECHO and C-STORE SCP, over dcmjs-dimse (DIMSE and association handling are the
 * library's; nothing here encodes a PDU). An association is accepted from an allowed caller that
 * calls the gateway's AE title. A CT image's data set is streamed, as it arrives and in the
 * transfer syntax it came in, into a spool file behind a Part 10 head (./spool.ts: the received
 * bytes are never decoded and re-encoded, so pixel data and every text value stay as the scanner
 * wrote them), synced to disk, and handed to the caller, which makes it durable in the study
 * before C-STORE answers success. Other storage SOP classes are accepted and discarded (PACS
 * routing rules send whole studies; refusing makes them fail and retry), or refused.
 */
import { randomBytes } from 'node:crypto';
import type { Server as NetServer, Socket } from 'node:net';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import type * as Dimse from 'dcmjs-dimse';
import { encodeFileHead } from '../core/dicom/encode.js';
import { CT_IMAGE_STORAGE_UID } from '../core/dicom/profile.js';
import { IMPLICIT_VR_LE, transferSyntax } from '../core/dicom/syntax.js';
import { describeError, InputError } from '../core/errors.js';
import { type AllowedCaller, dimse, isAllowed, plainAddress } from './dimse.js';
import type { GatewayLog } from './log.js';
import { Discard, discardFile, SyncedFile } from './spool.js';

const { Dataset, Scp, Server } = dimse;
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

/** The transfer syntax to accept for a proposed presentation context, or why it is refused. */
function chooseTransferSyntax(
  sopClass: string,
  offered: readonly string[],
  refuseOtherSopClasses: boolean,
): { syntax: string } | { refuse: 'sop-class' | 'transfer-syntax' } {
  let chosen: string | undefined;
  if (sopClass === VERIFICATION_SOP_CLASS) chosen = offered[0];
  else if (sopClass === CT_IMAGE_STORAGE_UID) chosen = offered.find(readableTransferSyntax);
  else if (sopClass.startsWith(STORAGE_ROOT) && !refuseOtherSopClasses) chosen = offered[0];
  else return { refuse: 'sop-class' };
  return chosen === undefined ? { refuse: 'transfer-syntax' } : { syntax: chosen };
}

/** What one association's SCP shares with the others: the options and a counter naming associations. */
interface ScpContext {
  readonly options: StoreScpOptions;
  nextAssociation(): number;
}

/** One association's SCP. */
class GatewayScp extends Scp {
  private association: Dimse.association.Association | undefined;
  private readonly id: number;
  /** Each C-STORE request's file and the transfer syntax its data set came in. */
  private readonly files = new WeakMap<object, { file: SyncedFile | Discard; syntax: string }>();
  private readonly open = new Set<SyncedFile>();
  /** What this association's C-STOREs came to, logged when it closes. */
  private readonly counts = { stored: 0, discarded: 0, refused: 0 };

  constructor(
    socket: never,
    opts: never,
    private readonly context: ScpContext,
  ) {
    super(socket, opts);
    this.id = context.nextAssociation();
    this.on('close', () => {
      // A file whose C-STORE was never answered: the sender sends it again.
      for (const f of this.open) void f.abandon().then(() => discardFile(f.path, this.log));
      if (this.association !== undefined)
        this.log.info('association closed', { association: this.id, ...this.counts });
    });
  }

  private get log(): GatewayLog {
    return this.context.options.log;
  }

  private get remote(): string {
    return plainAddress((this as unknown as { socket: { remoteAddress?: string } }).socket.remoteAddress);
  }

  override associationRequested(association: Dimse.association.Association): void {
    this.association = association;
    const { options } = this.context;
    const calling = association.getCallingAeTitle();
    const called = association.getCalledAeTitle();
    if (called !== options.aeTitle) {
      this.log.warn('association rejected: called AE title is not ours', {
        association: this.id,
        called,
        calling,
      });
      this.reject(RejectReason.CalledAeNotRecognized);
      return;
    }
    if (!isAllowed(options.allow, calling, this.remote)) {
      this.log.warn('association rejected: caller not allowed', {
        association: this.id,
        calling,
        host: this.remote,
      });
      this.reject(RejectReason.CallingAeNotRecognized);
      return;
    }
    for (const { id } of association.getPresentationContexts()) {
      const context = association.getPresentationContext(id);
      const choice = chooseTransferSyntax(
        context.getAbstractSyntaxUid(),
        context.getTransferSyntaxUids(),
        options.refuseOtherSopClasses ?? false,
      );
      if ('syntax' in choice) context.setResult(PresentationContextResult.Accept, choice.syntax);
      else if (choice.refuse === 'sop-class')
        context.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
      else context.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
    }
    this.log.info('association accepted', { association: this.id, calling, host: this.remote });
    this.sendAssociationAccept();
  }

  private reject(reason: number): void {
    this.sendAssociationReject(RejectResult.Permanent, RejectSource.ServiceUser, reason);
  }

  override associationReleaseRequested(): void {
    this.sendAssociationReleaseResponse();
  }

  override abort(): void {
    // The caller gave up the association and waits for the connection to close (DCMTK for 30 s):
    // dcmjs-dimse leaves it open. Closing it also drops the files of unanswered C-STOREs.
    this.log.info('association aborted by the caller', { association: this.id });
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
    const path = join(this.context.options.incomingDir, `.rx-${randomBytes(12).toString('hex')}.part`);
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
    if (!(file instanceof SyncedFile)) {
      this.log.info('instance discarded: not a CT image', {
        association: this.id,
        sopClass: request.getAffectedSopClassUid(),
      });
      this.counts.discarded++;
      answer(Status.Success);
      return;
    }
    this.open.delete(file);
    if (file.failed) {
      this.log.error('instance not stored: the spool cannot be written', {
        association: this.id,
        error: describeError(file.failed, { className: false }),
      });
      this.counts.refused++;
      void discardFile(file.path, this.log).then(() =>
        answer(STATUS_OUT_OF_RESOURCES, 'gateway spool cannot be written'),
      );
      return;
    }
    void this.storeReceived(request, file, syntax ?? '').then((verdict) =>
      verdict.stored ? answer(Status.Success) : answer(verdict.status, verdict.reason),
    );
  }

  /**
   * Hand a synced file to the caller's `accept`; never rejects. A refused or failed instance's file
   * is removed before C-STORE answers: it leaves nothing behind.
   */
  private async storeReceived(
    request: Dimse.requests.CStoreRequest,
    file: SyncedFile,
    syntax: string,
  ): Promise<StoreVerdict> {
    const bytes = file.bytes;
    let verdict: StoreVerdict;
    try {
      verdict = await this.context.options.accept({
        path: file.path,
        ...(bytes ? { bytes } : {}),
        sopClassUid: request.getAffectedSopClassUid(),
        sopInstanceUid: request.getAffectedSopInstanceUid(),
        transferSyntaxUid: syntax,
        callingAeTitle: this.association?.getCallingAeTitle() ?? '',
        association: this.id,
      });
    } catch (error) {
      this.counts.refused++;
      this.log.error('instance not stored', {
        association: this.id,
        error: describeError(error, { className: false }),
      });
      await discardFile(file.path, this.log);
      return {
        stored: false,
        status: STATUS_OUT_OF_RESOURCES,
        reason: 'gateway could not store the instance',
      };
    }
    this.counts[verdict.stored ? 'stored' : 'refused']++;
    if (!verdict.stored) await discardFile(file.path, this.log);
    return verdict;
  }
}

/** Start the SCP. Resolves once it listens. */
export function startStoreScp(options: StoreScpOptions): Promise<StoreScp> {
  let associations = 0;
  const context: ScpContext = { options, nextAssociation: () => ++associations };
  const server = new Server(
    class extends GatewayScp {
      constructor(socket: never, opts: never) {
        super(socket, opts, context);
      }
    },
  );
  const { log } = options;
  return new Promise((resolve, reject) => {
    server.once('networkError', (error: Error) =>
      reject(new InputError(`--port ${options.port}`, error.message)),
    );
    server.once('listening', () => {
      // dcmjs-dimse keeps its net.Server here; its address is the port actually bound (for port 0).
      const net = (server as unknown as { server: NetServer }).server;
      const address = net.address();
      server.on('networkError', (error: Error) =>
        log.warn('network error', { error: describeError(error, { className: false }) }),
      );
      resolve({
        port: typeof address === 'object' && address ? address.port : options.port,
        close: () => server.close(),
      });
    });
    server.listen(options.port, { associationTimeout: 30_000, pduTimeout: 60_000 });
  });
}
