/**
 * The gateway's C-STORE SCU, over dcmjs-dimse: it sends Part 10 files written by covidct (explicit
 * VR little endian) as their bytes, converting to implicit VR at the byte level when the receiver
 * accepts only that. Not through dcmjs's data sets: they would re-encode text values as UTF-8,
 * which breaks names in ISO 2022 IR 87 and other character sets.
 */
import type * as Dimse from 'dcmjs-dimse';
import { EXPLICIT_VR_LITTLE_ENDIAN } from '../core/dicom/encode.js';
import { explicitToImplicitLittleEndian, part10DataSet } from '../core/dicom/implicit.js';
import { IMPLICIT_VR_LE } from '../core/dicom/syntax.js';
import { InputError } from '../core/errors.js';
import { type DicomPeer, dimse } from './dimse.js';

const { Client, Dataset } = dimse;
const { CStoreRequest } = dimse.requests;

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

/** One instance's C-STORE request, its data set (whose syntax follows the receiver's choice) and outcome. */
interface PreparedStore {
  readonly dataset: Dimse.Dataset;
  readonly request: Dimse.requests.CStoreRequest;
  readonly outcome: { sopInstanceUid: string; status: number | undefined };
}

/** A C-STORE request that sends `instance`'s data set as its bytes, explicit or implicit VR. */
function prepareStore(instance: OutgoingInstance): PreparedStore {
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
  const outcome: PreparedStore['outcome'] = { sopInstanceUid: parts.sopInstanceUid, status: undefined };
  request.on('response', (response: Dimse.responses.CStoreResponse) => {
    outcome.status = response.getStatus();
  });
  return { dataset, request, outcome };
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
  const prepared = instances.map(prepareStore);
  for (const p of prepared) client.addRequest(p.request);
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
