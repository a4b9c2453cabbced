/**
 * FAILED reasons, bounded in one place. A reason is stored on the study item (DynamoDB: 400 KB per
 * item), published in the SNS notification (256 KB per message), returned by the API and logged;
 * a study of 2,000 failing series once made a 280 KB reason that broke the item's write and was
 * retried into the DLQ. Every reason the store writes goes through {@link capReason}; a reason
 * built from many causes shows the first few and counts the rest ({@link reasonWithCauses}).
 */

/** The most UTF-8 bytes of a stored, notified or logged reason. */
export const MAX_REASON_BYTES = 2048;
/** Causes a reason shows before it counts the rest. */
export const REASON_CAUSES_SHOWN = 3;
/** The most UTF-8 bytes of one shown cause (three of them and a summary fit {@link MAX_REASON_BYTES}). */
export const MAX_CAUSE_BYTES = 512;

const ELLIPSIS = '…';

/**
 * `text` as one line (its first) of at most `maxBytes` UTF-8 bytes, cut at a character boundary
 * and ended with `…` when cut.
 */
export function capReason(text: string, maxBytes: number = MAX_REASON_BYTES): string {
  const line = text.split(/\r\n|\r|\n|\u2028|\u2029/)[0] ?? '';
  if (Buffer.byteLength(line, 'utf8') <= maxBytes) return line;
  const budget = maxBytes - Buffer.byteLength(ELLIPSIS, 'utf8');
  let bytes = 0;
  let end = 0;
  for (const char of line) {
    const size = Buffer.byteLength(char, 'utf8');
    if (bytes + size > budget) break;
    bytes += size;
    end += char.length;
  }
  return `${line.slice(0, end)}${ELLIPSIS}`;
}

/**
 * `summary: first; second; third; and 1997 more`: the first `shown` causes (each capped to
 * {@link MAX_CAUSE_BYTES}) and a count of the rest, the whole capped by {@link capReason}.
 */
export function reasonWithCauses(
  summary: string,
  causes: readonly string[],
  shown: number = REASON_CAUSES_SHOWN,
): string {
  const listed = causes.slice(0, shown).map((cause) => capReason(cause, MAX_CAUSE_BYTES));
  const rest = causes.length - listed.length;
  const text = `${summary}: ${listed.join('; ')}${rest > 0 ? `; and ${rest} more` : ''}`;
  return capReason(text);
}
