/**
 * Generates the WebAssembly (text format, SIMD128) of one Winograd 3×3 convolution layer shape. The
 * module imports tfjs-backend-wasm's own memory, so it reads the input tensor and writes the output
 * tensor where tfjs keeps them, without copies. Everything known per layer (channels, tiles per
 * chunk, the activation) is baked in as constants, so the addresses in the inner loops are a base
 * pointer plus constant offsets.
 *
 * Three exported functions, run per chunk of `tiles` output tiles (see kernel.ts):
 * - `input`: gather each tile's n×n input window (zeros outside the image) and compute Bᵀ·d·B,
 *   four channels per vector, into V = `[n²][tiles][C]`;
 * - `gemm`: M[k] = V[k]·U[k] for the n² positions k, with a 4×8 register-blocked micro-kernel
 *   (4 tiles × 8 output channels, 8 vector accumulators) over the packed filters U;
 * - `output`: Aᵀ·M·A per tile, plus bias, then ReLU, into the NHWC output.
 */
import { PANEL, type WinogradMatrices } from './matrices.js';

/** The constants one generated module is specialised for. */
export interface WinogradModuleSpec {
  readonly f: WinogradMatrices;
  /** Input channels (a multiple of 4). */
  readonly inC: number;
  /** Output channels (a multiple of 8). */
  readonly outC: number;
  /** Tiles per chunk (a multiple of 4): the rows of each GEMM. */
  readonly tiles: number;
  /** Fused ReLU after the bias. */
  readonly relu: boolean;
}

/** `Σ coef·operand` over v128 operand expressions, skipping zeros and multiplying only where |coef| ≠ 1. */
function combination(coefs: readonly number[], operands: readonly string[]): string {
  const terms = coefs
    .map((c, i) => ({ c, x: operands[i]! }))
    .filter((t) => t.c !== 0)
    // A positive term first, so a leading negation is rarely needed.
    .sort((a, b) => Number(b.c > 0) - Number(a.c > 0));
  if (terms.length === 0) return '(v128.const f32x4 0 0 0 0)';
  const scaled = (c: number, x: string) => `(f32x4.mul ${x} (v128.const f32x4 ${c} ${c} ${c} ${c}))`;
  const first = terms[0]!;
  let expr = first.c === 1 ? first.x : first.c === -1 ? `(f32x4.neg ${first.x})` : scaled(first.c, first.x);
  for (const { c, x } of terms.slice(1)) {
    if (c === 1) expr = `(f32x4.add ${expr} ${x})`;
    else if (c === -1) expr = `(f32x4.sub ${expr} ${x})`;
    else if (c < 0) expr = `(f32x4.sub ${expr} ${scaled(-c, x)})`;
    else expr = `(f32x4.add ${expr} ${scaled(c, x)})`;
  }
  return expr;
}

const get = (name: string) => `(local.get $${name})`;
const range = (count: number) => Array.from({ length: count }, (_, i) => i);

/**
 * The first half of a 2-D transform, T = C·X for a constant matrix C and a grid X of v128 locals
 * with `cols` columns: one `local.set` of `target(r, c)` = Σᵢ C[r][i]·`source(i, c)` per cell, row by row.
 */
function leftProduct(
  coefs: readonly (readonly number[])[],
  cols: number,
  target: (row: number, col: number) => string,
  source: (i: number, col: number) => string,
): string[] {
  return coefs.flatMap((row, r) =>
    range(cols).map(
      (c) =>
        `(local.set $${target(r, c)} ${combination(
          row,
          range(row.length).map((i) => get(source(i, c))),
        )})`,
    ),
  );
}

/**
 * The per-tile prologue shared by `input` and `output`: tile `$t` → image `$img`, tile row `$ty`
 * and column `$tx`.
 */
const tileCoordinates = `
      (local.set $img (i32.div_u (local.get $t) (local.get $tilesPerImage)))
      (local.set $ty (i32.sub (local.get $t) (i32.mul (local.get $img) (local.get $tilesPerImage))))
      (local.set $tx (i32.rem_u (local.get $ty) (local.get $tilesW)))
      (local.set $ty (i32.div_u (local.get $ty) (local.get $tilesW)))`;

/**
 * The byte address of pixel (`$img`, `row`, `col`) of an NHWC tensor at `base` with `$rows`×`$cols`
 * pixels of `pixelBytes` bytes: base + ((img·rows + row)·cols + col)·pixelBytes. `row` and `col`
 * are i32 expressions; the other names are locals.
 */
function pixelAddress(
  base: string,
  rows: string,
  cols: string,
  row: string,
  col: string,
  pixelBytes: number,
): string {
  return `(i32.add ${get(base)}
    (i32.mul (i32.add (i32.mul (i32.add (i32.mul (local.get $img) ${get(rows)}) ${row}) ${get(cols)}) ${col})
             (i32.const ${pixelBytes})))`;
}

/** Lower local `$name` to `limit` when it is above it (unsigned or signed compare). */
const clampAbove = (name: string, limit: number, signed: boolean) =>
  `(if (i32.gt_${signed ? 's' : 'u'} ${get(name)} (i32.const ${limit})) (then (local.set $${name} (i32.const ${limit}))))`;

/** Move each named pointer local on by one vector (16 bytes). */
const advanceByVector = (names: readonly string[]) =>
  names.map((p) => `(local.set $${p} (i32.add ${get(p)} (i32.const 16)))`).join('\n          ');

function inputFunction(spec: WinogradModuleSpec): string {
  const { f, inC, tiles } = spec;
  const { n, m, BT } = f;
  const cBytes = inC * 4;
  const plane = tiles * cBytes;
  const locals = [
    ...range(n).map((i) => `(local $p${i} i32)`),
    ...range(n * n).map((k) => `(local $d${k} v128) (local $s${k} v128)`),
  ].join(' ');
  const body: string[] = [];
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++)
      body.push(`(local.set $d${i * n + j} (v128.load offset=${j * cBytes} ${get(`p${i}`)}))`);
  // s = Bᵀ·d.
  body.push(
    ...leftProduct(
      BT,
      n,
      (i, j) => `s${i * n + j}`,
      (r, j) => `d${r * n + j}`,
    ),
  );
  // V = s·B: row i of s against row j of Bᵀ; stored at position k = i·n + j.
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++)
      body.push(
        `(v128.store offset=${(i * n + j) * plane} (local.get $dst) ${combination(
          BT[j]!,
          range(n).map((s) => get(`s${i * n + s}`)),
        )})`,
      );
  const advance = advanceByVector([...range(n).map((i) => `p${i}`), 'dst']);
  return `
  (func (export "input") (param $x i32) (param $H i32) (param $W i32) (param $pt i32) (param $pl i32)
      (param $tilesW i32) (param $tilesPerImage i32) (param $t0 i32) (param $t1 i32) (param $v i32)
      (param $tmp i32)
    (local $t i32) (local $img i32) (local $ty i32) (local $tx i32) (local $y0 i32) (local $x0 i32)
    (local $src i32) (local $rs i32) (local $dst i32) (local $c i32) (local $i i32) (local $row i32)
    (local $lo i32) (local $hi i32)
    ${locals}
    (local.set $t (local.get $t0))
    (loop $tile
      ${tileCoordinates}
      (local.set $y0 (i32.sub (i32.mul (local.get $ty) (i32.const ${m})) (local.get $pt)))
      (local.set $x0 (i32.sub (i32.mul (local.get $tx) (i32.const ${m})) (local.get $pl)))
      (if (i32.and
            (i32.and (i32.ge_s (local.get $y0) (i32.const 0)) (i32.ge_s (local.get $x0) (i32.const 0)))
            (i32.and (i32.le_s (i32.add (local.get $y0) (i32.const ${n})) (local.get $H))
                     (i32.le_s (i32.add (local.get $x0) (i32.const ${n})) (local.get $W))))
        (then
          (local.set $rs (i32.mul (local.get $W) (i32.const ${cBytes})))
          (local.set $src ${pixelAddress('x', 'H', 'W', get('y0'), get('x0'), cBytes)}))
        (else
          ;; A window reaching past the image: copy its inside into the zeroed scratch tile.
          (memory.fill (local.get $tmp) (i32.const 0) (i32.const ${n * n * cBytes}))
          (local.set $lo (select (i32.const 0) (i32.sub (i32.const 0) (local.get $x0))
                                 (i32.ge_s (local.get $x0) (i32.const 0))))
          (local.set $hi (i32.sub (local.get $W) (local.get $x0)))
          ${clampAbove('hi', n, true)}
          (local.set $i (i32.const 0))
          (loop $rows
            (local.set $row (i32.add (local.get $y0) (local.get $i)))
            (if (i32.and (i32.and (i32.ge_s (local.get $row) (i32.const 0)) (i32.lt_s (local.get $row) (local.get $H)))
                         (i32.lt_s (local.get $lo) (local.get $hi)))
              (then
                (memory.copy
                  (i32.add (local.get $tmp)
                    (i32.mul (i32.add (i32.mul (local.get $i) (i32.const ${n})) (local.get $lo)) (i32.const ${cBytes})))
                  ${pixelAddress('x', 'H', 'W', get('row'), '(i32.add (local.get $x0) (local.get $lo))', cBytes)}
                  (i32.mul (i32.sub (local.get $hi) (local.get $lo)) (i32.const ${cBytes})))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $rows (i32.lt_u (local.get $i) (i32.const ${n}))))
          (local.set $src (local.get $tmp))
          (local.set $rs (i32.const ${n * cBytes}))))
      ${range(n)
        .map(
          (i) => `(local.set $p${i} (i32.add (local.get $src) (i32.mul (local.get $rs) (i32.const ${i}))))`,
        )
        .join('\n      ')}
      (local.set $dst (i32.add (local.get $v) (i32.mul (i32.sub (local.get $t) (local.get $t0)) (i32.const ${cBytes}))))
      (local.set $c (i32.const 0))
      (loop $channels
        ${body.join('\n        ')}
        ${advance}
        (local.set $c (i32.add (local.get $c) (i32.const 4)))
        (br_if $channels (i32.lt_u (local.get $c) (i32.const ${inC}))))
      (local.set $t (i32.add (local.get $t) (i32.const 1)))
      (br_if $tile (i32.lt_u (local.get $t) (local.get $t1)))))`;
}

function gemmFunction(spec: WinogradModuleSpec): string {
  const { f, inC, outC, tiles } = spec;
  const nk = f.n * f.n;
  const panels = outC / PANEL;
  const unroll = 4;
  const step: string[] = [];
  for (let u = 0; u < unroll; u++) {
    step.push(`(local.set $b0 (v128.load offset=${u * PANEL * 4} (local.get $b)))`);
    step.push(`(local.set $b1 (v128.load offset=${u * PANEL * 4 + 16} (local.get $b)))`);
    for (let r = 0; r < 4; r++) {
      step.push(`(local.set $av (v128.load32_splat offset=${(r * inC + u) * 4} (local.get $a)))`);
      step.push(
        `(local.set $acc${2 * r} (f32x4.add (local.get $acc${2 * r}) (f32x4.mul (local.get $av) (local.get $b0))))`,
      );
      step.push(
        `(local.set $acc${2 * r + 1} (f32x4.add (local.get $acc${2 * r + 1}) (f32x4.mul (local.get $av) (local.get $b1))))`,
      );
    }
  }
  const zero = range(8)
    .map((i) => `(local.set $acc${i} (v128.const i32x4 0 0 0 0))`)
    .join(' ');
  const store = range(4)
    .flatMap((r) => [
      `(v128.store offset=${r * outC * 4} (local.get $out) (local.get $acc${2 * r}))`,
      `(v128.store offset=${r * outC * 4 + 16} (local.get $out) (local.get $acc${2 * r + 1}))`,
    ])
    .join('\n            ');
  return `
  (func (export "gemm") (param $v i32) (param $u i32) (param $mm i32) (param $rows i32)
    (local $k i32) (local $p i32) (local $r i32) (local $a i32) (local $b i32) (local $panel i32)
    (local $out i32) (local $end i32)
    (local $b0 v128) (local $b1 v128) (local $av v128)
    ${range(8)
      .map((i) => `(local $acc${i} v128)`)
      .join(' ')}
    (local.set $k (i32.const 0))
    (loop $positions
      (local.set $p (i32.const 0))
      (loop $panels
        (local.set $panel (i32.add (local.get $u)
          (i32.mul (i32.add (i32.mul (local.get $k) (i32.const ${panels})) (local.get $p)) (i32.const ${inC * PANEL * 4}))))
        (local.set $r (i32.const 0))
        (loop $rowBlocks
          (local.set $a (i32.add (local.get $v)
            (i32.mul (i32.add (i32.mul (local.get $k) (i32.const ${tiles})) (local.get $r)) (i32.const ${inC * 4}))))
          (local.set $b (local.get $panel))
          (local.set $end (i32.add (local.get $a) (i32.const ${inC * 4})))
          ${zero}
          (loop $depth
            ${step.join('\n            ')}
            (local.set $a (i32.add (local.get $a) (i32.const ${unroll * 4})))
            (local.set $b (i32.add (local.get $b) (i32.const ${unroll * PANEL * 4})))
            (br_if $depth (i32.lt_u (local.get $a) (local.get $end))))
          (local.set $out (i32.add (local.get $mm)
            (i32.mul
              (i32.add (i32.mul (i32.add (i32.mul (local.get $k) (i32.const ${tiles})) (local.get $r)) (i32.const ${outC}))
                       (i32.mul (local.get $p) (i32.const ${PANEL})))
              (i32.const 4))))
          ${store}
          (local.set $r (i32.add (local.get $r) (i32.const 4)))
          (br_if $rowBlocks (i32.lt_u (local.get $r) (local.get $rows))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br_if $panels (i32.lt_u (local.get $p) (i32.const ${panels}))))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $positions (i32.lt_u (local.get $k) (i32.const ${nk})))))`;
}

function outputFunction(spec: WinogradModuleSpec): string {
  const { f, outC, tiles, relu } = spec;
  const { n, m, AT } = f;
  const kBytes = outC * 4;
  const plane = tiles * kBytes;
  const locals = [
    ...range(m).map((r) => `(local $q${r} i32)`),
    ...range(n * n).map((k) => `(local $m${k} v128)`),
    ...range(m * n).map((k) => `(local $u${k} v128)`),
  ].join(' ');
  const body: string[] = [];
  for (let k = 0; k < n * n; k++)
    body.push(`(local.set $m${k} (v128.load offset=${k * plane} (local.get $src)))`);
  body.push('(local.set $bv (v128.load (local.get $b)))');
  // u = Aᵀ·M (m×n), then Y = u·A (m×m).
  body.push(
    ...leftProduct(
      AT,
      n,
      (r, s) => `u${r * n + s}`,
      (i, s) => `m${i * n + s}`,
    ),
  );
  for (let r = 0; r < m; r++)
    for (let q = 0; q < m; q++) {
      const value = `(f32x4.add ${combination(
        AT[q]!,
        range(n).map((s) => get(`u${r * n + s}`)),
      )} (local.get $bv))`;
      body.push(
        `(v128.store offset=${q * kBytes} (local.get $q${r}) ${relu ? `(f32x4.max ${value} (v128.const i32x4 0 0 0 0))` : value})`,
      );
    }
  const advance = advanceByVector([...range(m).map((r) => `q${r}`), 'src', 'b']);
  return `
  (func (export "output") (param $mm i32) (param $y i32) (param $bias i32) (param $OH i32) (param $OW i32)
      (param $tilesW i32) (param $tilesPerImage i32) (param $t0 i32) (param $t1 i32) (param $tmp i32)
    (local $t i32) (local $img i32) (local $ty i32) (local $tx i32) (local $oy i32) (local $ox i32)
    (local $dst i32) (local $rs i32) (local $src i32) (local $b i32) (local $j i32) (local $full i32)
    (local $i i32) (local $rowsLeft i32) (local $colsLeft i32) (local $bv v128)
    ${locals}
    (local.set $t (local.get $t0))
    (loop $tile
      ${tileCoordinates}
      (local.set $oy (i32.mul (local.get $ty) (i32.const ${m})))
      (local.set $ox (i32.mul (local.get $tx) (i32.const ${m})))
      (local.set $full (i32.and (i32.le_u (i32.add (local.get $oy) (i32.const ${m})) (local.get $OH))
                                (i32.le_u (i32.add (local.get $ox) (i32.const ${m})) (local.get $OW))))
      (if (local.get $full)
        (then
          (local.set $rs (i32.mul (local.get $OW) (i32.const ${kBytes})))
          (local.set $dst ${pixelAddress('y', 'OH', 'OW', get('oy'), get('ox'), kBytes)}))
        (else
          ;; A tile reaching past the output: compute into scratch, copy the inside below.
          (local.set $rs (i32.const ${m * kBytes}))
          (local.set $dst (local.get $tmp))))
      ${range(m)
        .map(
          (r) => `(local.set $q${r} (i32.add (local.get $dst) (i32.mul (local.get $rs) (i32.const ${r}))))`,
        )
        .join('\n      ')}
      (local.set $src (i32.add (local.get $mm) (i32.mul (i32.sub (local.get $t) (local.get $t0)) (i32.const ${kBytes}))))
      (local.set $b (local.get $bias))
      (local.set $j (i32.const 0))
      (loop $channels
        ${body.join('\n        ')}
        ${advance}
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br_if $channels (i32.lt_u (local.get $j) (i32.const ${outC}))))
      (if (i32.eqz (local.get $full))
        (then
          (local.set $rowsLeft (i32.sub (local.get $OH) (local.get $oy)))
          ${clampAbove('rowsLeft', m, false)}
          (local.set $colsLeft (i32.sub (local.get $OW) (local.get $ox)))
          ${clampAbove('colsLeft', m, false)}
          (local.set $i (i32.const 0))
          (loop $rows
            (memory.copy
              ${pixelAddress('y', 'OH', 'OW', '(i32.add (local.get $oy) (local.get $i))', get('ox'), kBytes)}
              (i32.add (local.get $tmp) (i32.mul (local.get $i) (i32.const ${m * kBytes})))
              (i32.mul (local.get $colsLeft) (i32.const ${kBytes})))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $rows (i32.lt_u (local.get $i) (local.get $rowsLeft))))))
      (local.set $t (i32.add (local.get $t) (i32.const 1)))
      (br_if $tile (i32.lt_u (local.get $t) (local.get $t1)))))`;
}

/** The whole module's text for `spec`. */
export function winogradModuleText(spec: WinogradModuleSpec): string {
  const { inC, outC, tiles } = spec;
  if (inC % 4 !== 0 || outC % PANEL !== 0 || tiles % 4 !== 0) {
    throw new RangeError(`winograd module: inC ${inC} (÷4), outC ${outC} (÷8), tiles ${tiles} (÷4)`);
  }
  return `(module
  (import "env" "memory" (memory 0))
  ${inputFunction(spec)}
  ${gemmFunction(spec)}
  ${outputFunction(spec)})
`;
}
