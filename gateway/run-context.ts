/**
 * What the steps of a run (./send.ts, ./deliver.ts) are given by the gateway that schedules them
 * (./gateway.ts): the state folder, the log, where to send and deliver, and the runs it holds.
 */
import type { InstanceReference } from '../core/dicom/result-objects.js';
import type { ApiTarget } from '../pipeline/api-client.js';
import type { DicomPeer } from './dimse.js';
import type { GatewayLog } from './log.js';
import type { GatewayState, RunRecord } from './state.js';

/** The gateway as a run's steps see it. */
export interface RunContext {
  readonly state: GatewayState;
  readonly log: GatewayLog;
  /** The cloud's API. */
  readonly api: ApiTarget;
  /** How often the API is asked about a study (ms). */
  readonly pollMs: number;
  /** Where results are delivered, and the AE title they are sent from. */
  readonly destination: DicomPeer;
  readonly aeTitle: string;
  /** Save a run's record (synced) and keep it as the run's latest; resolves with it. */
  save(run: RunRecord): Promise<RunRecord>;
  /** Whether the gateway is stopping: a step that waits gives up. */
  stopping(): boolean;
  /** The SR of the study's latest earlier run that has results: the predecessor a new SR names. */
  previousSr(run: RunRecord): InstanceReference | undefined;
}
