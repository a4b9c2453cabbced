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
import { open } from 'node:fs/promises';
import { fileSystemError, InputError } from '../errors.js';

/** Fewest bytes a secret file must hold. */
export const MIN_SECRET_BYTES = 16;

/** Maps original UIDs to new ones, remembering every pair of the run. */
export class UidMapper {
  private readonly pairs = new Map<string, string>();
  private readonly secret: Uint8Array;

  /**
   * `secret`: the HMAC key; random (32 bytes) when omitted. `source` names where it came from (the
   * secret file) in the error a too short secret raises.
   */
  constructor(secret?: Uint8Array, source = 'UID secret') {
    if (secret !== undefined && secret.length < MIN_SECRET_BYTES) {
      throw new InputError(
        source,
        `the UID secret holds ${secret.length} bytes, expected at least ${MIN_SECRET_BYTES} (e.g. \`head -c 32 /dev/urandom > FILE\`)`,
      );
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

  /** The new UID already given to `uid` in this run, or undefined (maps nothing). */
  replacementOf(uid: string): string | undefined {
    return this.pairs.get(uid);
  }

  /** Every pair mapped so far, original first, in the order first seen. */
  entries(): [string, string][] {
    return [...this.pairs.entries()];
  }
}

/**
 * Read a secret file for {@link UidMapper} (its bytes as they are; at least 16). A file that its
 * group or others may read is refused, as the map file is written 0600: whoever can read the secret
 * can test guesses of original UIDs against the new ones.
 */
export async function readUidSecret(path: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    const handle = await open(path, 'r');
    try {
      // The mode of the file opened, not of whatever the path names a moment later.
      const { mode } = await handle.stat();
      if ((mode & 0o077) !== 0) {
        throw new InputError(
          path,
          `UID secret file has mode ${(mode & 0o777).toString(8).padStart(4, '0')}, open to group or others; expected 0600 or 0400 (\`chmod 600 FILE\`)`,
        );
      }
      bytes = await handle.readFile();
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (error instanceof InputError) throw error;
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
