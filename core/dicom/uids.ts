/**
 * New UIDs for de-identification: one original UID → one new UID everywhere in a run, so a
 * series keeps its members and references keep pointing at the right instance.
 *
 * The new UID is `2.25.` and the first 128 bits of HMAC-SHA256(secret, original) in decimal. The
 * secret stays on the hospital's side: an unkeyed hash of a UID could be reversed by anyone who
 * holds the original (the hospital's PACS, the modality, a colleague's copy) by hashing it again.
 * By default the secret is random per run; a gateway that wants the same new UIDs across runs
 * keeps a secret file and passes it in.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileSystemError, InputError } from '../errors.js';

/** Fewest bytes a secret file must hold. */
export const MIN_SECRET_BYTES = 16;

/** Maps original UIDs to new ones, remembering every pair of the run. */
export class UidMapper {
  private readonly pairs = new Map<string, string>();
  private readonly secret: Uint8Array;

  /** `secret`: the HMAC key; random (32 bytes) when omitted. */
  constructor(secret?: Uint8Array) {
    if (secret !== undefined && secret.length < MIN_SECRET_BYTES) {
      throw new RangeError(`UID secret must be at least ${MIN_SECRET_BYTES} bytes`);
    }
    this.secret = secret ?? randomBytes(32);
  }

  /** The new UID for `uid` (trailing NUL and space padding ignored). */
  map(uid: string): string {
    const original = uid.replace(/[\0 ]+$/, '').trim();
    const known = this.pairs.get(original);
    if (known !== undefined) return known;
    const digest = createHmac('sha256', this.secret).update(original, 'latin1').digest();
    const n = BigInt(`0x${digest.subarray(0, 16).toString('hex')}`);
    const replaced = `2.25.${n.toString()}`;
    this.pairs.set(original, replaced);
    return replaced;
  }

  /** Every pair mapped so far, original first, in the order first seen. */
  entries(): [string, string][] {
    return [...this.pairs.entries()];
  }
}

/** Read a secret file for {@link UidMapper} (its bytes as they are; at least 16). */
export async function readUidSecret(path: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw fileSystemError(path, error);
  }
  if (bytes.length < MIN_SECRET_BYTES) {
    throw new InputError(
      path,
      `UID secret file holds ${bytes.length} bytes, expected at least ${MIN_SECRET_BYTES} (e.g. \`head -c 32 /dev/urandom > FILE\`)`,
    );
  }
  return bytes;
}
