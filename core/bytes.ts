/**
 * Byte arrays joined in one copy: DICOM elements and files (core/dicom), ONNX graphs and weight
 * buffers (models/onnx) all build their output this way.
 */

/** `parts` one after the other in one array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, b) => n + b.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
