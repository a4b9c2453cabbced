/**
 * DICOM networking of the gateway, over dcmjs-dimse (DIMSE and association handling are the
 * library's; nothing here encodes a PDU): the library itself, set up once for the gateway, and the
 * parties of an association (AE titles, the callers allowed, the destination). The SCP that
 * receives is ./store-scp.ts (writing what it receives through ./spool.ts), the SCU that delivers
 * results is ./store-scu.ts.
 *
 * The library's own logging (about a thousand INFO lines per association) goes to the gateway's
 * log at warning level and above.
 */
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import type * as Dimse from 'dcmjs-dimse';
import { parseBoundedInt } from '../core/bounded-int.js';
import { COVIDCT_IMPLEMENTATION_UID, COVIDCT_IMPLEMENTATION_VERSION } from '../core/dicom/encode.js';
import { InputError } from '../core/errors.js';
import type { GatewayLog } from './log.js';

/** dcmjs-dimse, loaded once: a CommonJS bundle whose exports Node's ESM loader cannot see by name. */
export const dimse = createRequire(import.meta.url)('dcmjs-dimse') as typeof Dimse;

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
  const port = parseBoundedInt(match?.[3] ?? '', 1, 65535);
  if (!match || port === undefined) {
    throw new InputError('--destination', `'${text}': expected AE@HOST:PORT`);
  }
  return { aeTitle: checkAeTitle('--destination', match[1]!), host: match[2]!, port };
}

/** An IPv4 address as Node gives it for a dual-stack socket (`::ffff:10.0.0.5`) → `10.0.0.5`. */
export function plainAddress(address: string | undefined): string {
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
  dimse.Implementation.setImplementationClassUid(COVIDCT_IMPLEMENTATION_UID);
  dimse.Implementation.setImplementationVersion(COVIDCT_IMPLEMENTATION_VERSION);
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
