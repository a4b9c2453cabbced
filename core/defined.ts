/**
 * Options objects without their absent entries. With `exactOptionalPropertyTypes` an optional
 * property may be missing but not `undefined`, so a caller forwarding optional values would write
 * `...(x === undefined ? {} : { x })` once per value; {@link definedOnly} is that rule once.
 */

/** `T`'s entries whose value is not `undefined`, typed as optional properties. */
export type DefinedOnly<T> = { [K in keyof T]?: Exclude<T[K], undefined> };

/** A copy of `values` without the entries whose value is `undefined` (see the module comment). */
export function definedOnly<T extends object>(values: T): DefinedOnly<T> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(values)) {
    if (value !== undefined) out[key] = value;
  }
  return out as DefinedOnly<T>;
}
