/**
 * What the gateway does with each instance the SCP received, before C-STORE answers: read the
 * few attributes that place it (its study and patient), refuse what covidct could not analyse or
 * what would mix two patients in one study, and make the rest durable in its study (./state.ts).
 * The studies it knows are kept in memory: when each last received an instance, whose they are,
 * and the newest arrival a run has taken; a restart reads them back from the state folder.
 */
import { readFile } from 'node:fs/promises';
import { readTopLevelValues, trimmed } from '../core/dicom/deidentify.js';
import { PIXEL_DATA, STUDY_INSTANCE_UID, tag } from '../core/dicom/tags.js';
import { describeError } from '../core/errors.js';
import type { GatewayLog } from './log.js';
import type { GatewayState } from './state.js';
import { type ReceivedInstance, STATUS_CANNOT_UNDERSTAND, type StoreVerdict } from './store-scp.js';

const PATIENT_ID = tag(0x0010, 0x0020);
const ISSUER_OF_PATIENT_ID = tag(0x0010, 0x0021);

/** What the gateway knows of a study it received. */
export interface StudyEntry {
  /** When its newest instance arrived (ms). */
  lastArrivalMs: number;
  /** Whose it is: a key of issuer and patient id ('' when not known). */
  patient: string;
  /** The newest arrival a run has taken (ms); a run is due when a later one came and the study went quiet. */
  snapshotMs: number;
}

/** Which patient an instance is of, keyed like the folders (issuer and patient id). */
function patientOf(state: GatewayState, values: ReadonlyMap<number, Uint8Array>): string {
  const text = (tag: number) => trimmed(values.get(tag) ?? new Uint8Array());
  return state.keyOf('patient', `${text(ISSUER_OF_PATIENT_ID)}\u0000${text(PATIENT_ID)}`);
}

/** The studies in the state folder, as a restart finds them (runs' snapshots not yet applied). */
export async function loadStudies(state: GatewayState): Promise<Map<string, StudyEntry>> {
  const studies = new Map<string, StudyEntry>();
  for (const [studyKey, files] of await state.studies()) {
    if (files.length === 0) continue;
    // The study's patient, from one of its instances: a restart keeps refusing another patient's.
    let patient = '';
    try {
      const first = files[0]!.file;
      patient = patientOf(
        state,
        readTopLevelValues(await readFile(first), first, [PATIENT_ID, ISSUER_OF_PATIENT_ID]).values,
      );
    } catch {
      // Stored instances were readable when they arrived; if one is not now, the next arrival decides.
    }
    studies.set(studyKey, {
      lastArrivalMs: Math.max(...files.map((f) => f.mtimeMs)),
      patient,
      snapshotMs: 0,
    });
  }
  return studies;
}

/** A C-STORE failure that names why (the sender's log shows it). */
function refuse(reason: string): StoreVerdict {
  return { stored: false, status: STATUS_CANNOT_UNDERSTAND, reason };
}

/**
 * The attributes that place a received instance, or why it is refused: not readable up to the end
 * of its pixel data, no pixel data, no StudyInstanceUID.
 */
async function placeOf(
  instance: ReceivedInstance,
  log: GatewayLog,
): Promise<{ values: ReadonlyMap<number, Uint8Array>; studyUid: string } | StoreVerdict> {
  let values: ReadonlyMap<number, Uint8Array>;
  let hasPixels: boolean;
  try {
    const read = readTopLevelValues(instance.bytes ?? (await readFile(instance.path)), 'received instance', [
      PATIENT_ID,
      ISSUER_OF_PATIENT_ID,
      STUDY_INSTANCE_UID,
      // A data set cut short or damaged anywhere up to the end of its pixels is refused here,
      // before C-STORE answers success (the read stops after the last tag asked for).
      PIXEL_DATA,
    ]);
    values = read.values;
    hasPixels = read.present.has(PIXEL_DATA);
  } catch (error) {
    log.warn('instance refused: cannot be read', {
      association: instance.association,
      error: describeError(error),
    });
    return refuse('not a readable DICOM data set');
  }
  if (!hasPixels) {
    // Also a data set cut exactly before its pixel data: nothing covidct could analyse.
    log.warn('instance refused: a CT image without pixel data', { association: instance.association });
    return refuse('CT image without pixel data');
  }
  const studyUid = trimmed(values.get(STUDY_INSTANCE_UID) ?? new Uint8Array());
  if (studyUid === '') {
    log.warn('instance refused: no StudyInstanceUID', { association: instance.association });
    return refuse('no StudyInstanceUID');
  }
  return { values, studyUid };
}

/**
 * The SCP's `accept`: place a received instance, refuse it or store it into its study, and note
 * its arrival in `studies`. Rejects when the state cannot store it (C-STORE then answers "out of
 * resources" and the sender tries again).
 */
export function instanceReceiver(
  state: GatewayState,
  studies: Map<string, StudyEntry>,
  log: GatewayLog,
): (instance: ReceivedInstance) => Promise<StoreVerdict> {
  return async (instance) => {
    const place = await placeOf(instance, log);
    if ('stored' in place) return place;
    const studyKey = state.keyOf('study', place.studyUid);
    const patient = patientOf(state, place.values);
    const known = studies.get(studyKey);
    if (known && known.patient !== '' && known.patient !== patient) {
      log.warn('instance refused: its study holds another patient', {
        association: instance.association,
        study: studyKey,
      });
      return refuse('study UID already holds another patient');
    }
    // Claimed before the first await: another association bringing the same study for another
    // patient meanwhile is refused above, not stored beside it.
    const entry = known ?? { lastArrivalMs: 0, patient, snapshotMs: 0 };
    entry.patient ||= patient;
    if (!known) studies.set(studyKey, entry);
    try {
      await state.storeInstance(instance.path, studyKey, state.keyOf('instance', instance.sopInstanceUid));
    } catch (error) {
      if (!known && entry.lastArrivalMs === 0 && studies.get(studyKey) === entry) studies.delete(studyKey);
      throw error;
    }
    // After the file's own time: a run's snapshot takes the later of the two (startDueRuns, ./gateway.ts).
    entry.lastArrivalMs = Math.max(entry.lastArrivalMs, Date.now());
    if (!known) log.info('study arriving', { study: studyKey, association: instance.association });
    return { stored: true };
  };
}
