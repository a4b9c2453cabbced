/**
 * Counting raw values below a limit in a rectangle of 16-bit pixels — the inner loop of slice
 * selection — with a 259-byte WebAssembly SIMD kernel: eight pixels per compare, about 1.5 µs for
 * the paper's 100 × 250 region, against 16–25 µs for the same loop in JavaScript (a data-dependent
 * branch per pixel). Pixels can be placed straight in the kernel's memory ({@link scratchPixels}),
 * so a slice read from a file is counted where the read put it, without a copy.
 *
 * The kernel is {@link DARK_COUNT_WAT}, assembled once by wabt into {@link DARK_COUNT_WASM} (a test
 * checks that the two agree and that the kernel counts like the plain loop). Where WebAssembly or
 * its SIMD is missing, the plain loop counts, with the same results.
 */

/** The kernel, in WebAssembly text. `countBelow(ptr, stride, rows, cols, limit)` counts the u16 values below `limit` in `rows` rows of `cols` values each, the first at byte `ptr`, rows `stride` bytes apart. */
export const DARK_COUNT_WAT = `(module
  (memory (export "memory") 2)
  (func (export "countBelow")
    (param $ptr i32) (param $stride i32) (param $rows i32) (param $cols i32) (param $limit i32)
    (result i32)
    (local $acc v128) (local $row v128) (local $lim v128)
    (local $p i32) (local $end i32) (local $vend i32) (local $total i32) (local $r i32)
    (local.set $lim (i16x8.splat (local.get $limit)))
    (block $done
      (loop $rowloop
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $p (local.get $ptr))
        (local.set $end (i32.add (local.get $ptr) (i32.shl (local.get $cols) (i32.const 1))))
        (local.set $vend
          (i32.add (local.get $ptr) (i32.shl (i32.and (local.get $cols) (i32.const -8)) (i32.const 1))))
        ;; eight 16-bit lanes: a true compare is -1, so subtracting it counts; a row adds at most
        ;; cols/8 per lane, far below 2^16, then the lanes are widened into the 32-bit total
        (local.set $row (v128.const i32x4 0 0 0 0))
        (block $vdone
          (loop $vloop
            (br_if $vdone (i32.ge_u (local.get $p) (local.get $vend)))
            (local.set $row
              (i16x8.sub (local.get $row)
                (i16x8.lt_u (v128.load align=1 (local.get $p)) (local.get $lim))))
            (local.set $p (i32.add (local.get $p) (i32.const 16)))
            (br $vloop)))
        (local.set $acc (i32x4.add (local.get $acc) (i32x4.extadd_pairwise_i16x8_u (local.get $row))))
        ;; the last cols % 8 values, one at a time
        (block $sdone
          (loop $sloop
            (br_if $sdone (i32.ge_u (local.get $p) (local.get $end)))
            (local.set $total
              (i32.add (local.get $total) (i32.lt_u (i32.load16_u (local.get $p)) (local.get $limit))))
            (local.set $p (i32.add (local.get $p) (i32.const 2)))
            (br $sloop)))
        (local.set $ptr (i32.add (local.get $ptr) (local.get $stride)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rowloop)))
    (i32.add (local.get $total)
      (i32.add
        (i32.add (i32x4.extract_lane 0 (local.get $acc)) (i32x4.extract_lane 1 (local.get $acc)))
        (i32.add (i32x4.extract_lane 2 (local.get $acc)) (i32x4.extract_lane 3 (local.get $acc)))))))
`;

/** {@link DARK_COUNT_WAT} assembled by wabt 1.0.39 (`parseWat(…, { simd: true }).toBinary({})`), base64. */
export const DARK_COUNT_WASM =
  'AGFzbQEAAAABCgFgBX9/f39/AX8DAgEABQMBAAIHFwIGbWVtb3J5AgAKY291bnRCZWxvdwAACsoBAccBAgN7BX8gBP0QIQcCQANAIAwgAk8NASAAIQggACADQQF0aiEJIAAgA0F4cUEBdGohCv0MAAAAAAAAAAAAAAAAAAAAACEGAkADQCAIIApPDQEgBiAI/QAAACAH/TD9kQEhBiAIQRBqIQgMAAsLIAUgBv1//a4BIQUCQANAIAggCU8NASALIAgvAQAgBElqIQsgCEECaiEIDAALCyAAIAFqIQAgDEEBaiEMDAALCyALIAX9GwAgBf0bAWogBf0bAiAF/RsDampqCw==';

/** A rectangle of a row-major pixel array: `rows` rows of `cols` values from index `start`, rows `width` apart. */
export interface PixelRect {
  readonly start: number;
  readonly width: number;
  readonly rows: number;
  readonly cols: number;
}

/** The WebAssembly JS API used here: the project compiles without the DOM typings that declare it. */
interface WebAssemblyApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: unknown };
}

interface Kernel {
  readonly memory: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  countBelow(ptr: number, stride: number, rows: number, cols: number, limit: number): number;
}

const PAGE = 65536;
let kernel: Kernel | null | undefined;

/** The kernel, compiled on first use; null where it cannot run (no WebAssembly, no SIMD). */
function loadKernel(): Kernel | null {
  if (kernel !== undefined) return kernel;
  kernel = null;
  const api = (globalThis as unknown as { WebAssembly?: WebAssemblyApi }).WebAssembly;
  if (api === undefined) return kernel;
  try {
    const bytes = Buffer.from(DARK_COUNT_WASM, 'base64');
    if (!api.validate(bytes)) return kernel; // an engine without SIMD128
    kernel = new api.Instance(new api.Module(bytes), {}).exports as Kernel;
  } catch {
    kernel = null; // counting still works, in JavaScript
  }
  return kernel;
}

/** Whether counts run in the WebAssembly kernel (false: the JavaScript loop). */
export function wasmCountAvailable(): boolean {
  return loadKernel() !== null;
}

/**
 * `length` pixels of scratch space in the kernel's memory (or a plain array without the kernel),
 * for a reader to fill and {@link countBelow} to count in place. The view is valid until the next
 * call of this function or of {@link countBelow}: fill it and count it synchronously, never keep it.
 */
export function scratchPixels(length: number): Uint16Array {
  const k = loadKernel();
  if (k === null) return new Uint16Array(length);
  const bytes = length * 2;
  const have = k.memory.buffer.byteLength;
  if (bytes > have) k.memory.grow(Math.ceil((bytes - have) / PAGE));
  return new Uint16Array(k.memory.buffer, 0, length);
}

/** How many values of `rect` in `pixels` are below `limit`. */
export function countBelow(pixels: Uint16Array, rect: PixelRect, limit: number): number {
  const { start, width, rows, cols } = rect;
  if (rows <= 0 || cols <= 0) return 0;
  if (start < 0 || cols > width || start + (rows - 1) * width + cols > pixels.length) {
    throw new RangeError(
      `rectangle of ${rows}×${cols} values from index ${start} (rows ${width} apart) lies outside ${pixels.length} pixels`,
    );
  }
  // Integer values: v < limit exactly when v < ceil(limit); both loops take an integer in 1…65535.
  const below = Math.ceil(limit);
  if (!(below >= 1)) return 0; // NaN too: nothing compares below it
  if (below > 65535) return rows * cols;
  const k = loadKernel();
  if (k === null) return countBelowJs(pixels, rect, below);
  let source = pixels;
  let first = start;
  if (pixels.buffer !== k.memory.buffer) {
    // Copying the rows in (≈5 µs for 100 rows of 512) and counting with SIMD still beats the loop.
    const span = (rows - 1) * width + cols;
    source = scratchPixels(span);
    source.set(pixels.subarray(start, start + span));
    first = 0;
  }
  return k.countBelow(source.byteOffset + first * 2, width * 2, rows, cols, below);
}

/**
 * The plain loop, branch-free for an integer `limit` in 1…65535: `(v − limit) >>> 31` is 1 exactly
 * when v < limit. Exported for tests and for comparison; {@link countBelow} takes any limit.
 */
export function countBelowJs(pixels: Uint16Array, rect: PixelRect, limit: number): number {
  const { start, width, rows, cols } = rect;
  let n = 0;
  for (let y = 0; y < rows; y++) {
    const base = start + y * width;
    const end = base + cols;
    for (let i = base; i < end; i++) n += (pixels[i]! - limit) >>> 31;
  }
  return n;
}
