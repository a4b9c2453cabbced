/**
 * What the scripts in bench/ share: the network they build (`--arch`, `--size`) and the raw-domain
 * input they time it on. Speed only, so the pixels are deterministic noise, not a CT slice.
 */

/** parseArgs options every script takes: the architecture and the input size. */
export const MODEL_OPTIONS = {
  arch: { type: 'string', default: 'resnet50v2-fpn' },
  size: { type: 'string', default: '512' },
};

/** `count` slices of `size`×`size` deterministic raw-domain values (0 … 1999), one LCG for all scripts. */
export function rawPixels(count, size) {
  const out = new Float32Array(count * size * size);
  let s = 12345;
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s % 2000;
  }
  return out;
}
