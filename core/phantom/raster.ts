/**
 * Raster primitives for the phantom: shapes painted into a Hounsfield image and a label image at
 * once. Each primitive walks only its bounding box (and row spans where the shape allows), which
 * keeps a 512×512 slice at a few milliseconds.
 */

/** A slice being painted: HU values and the tissue label of every pixel, row-major. */
export interface Canvas {
  readonly width: number;
  readonly height: number;
  readonly hu: Float32Array;
  readonly label: Uint8Array;
}

/** Make a canvas filled with one value and label. */
export function createCanvas(width: number, height: number, hu: number, label: number): Canvas {
  const c = {
    width,
    height,
    hu: new Float32Array(width * height),
    label: new Uint8Array(width * height),
  };
  c.hu.fill(hu);
  c.label.fill(label);
  return c;
}

/** A set of labels as a bit mask (labels are below 32): `maskOf(A, B)`. */
export function maskOf(...labels: readonly number[]): number {
  let m = 0;
  for (const l of labels) m |= 1 << l;
  return m;
}

/** Every label: paint over anything. */
export const ANY = 0xffffffff;

/**
 * Fill a superellipse `|dx/rx|^p + |dy/ry|^p ≤ 1`, with its own exponent above the centre
 * (`pTop`, smaller y) and below (`pBottom`), so one call draws a body that is round in front and
 * flat at the back. Only pixels whose label is in `over` change.
 */
export function fillSuperellipse(
  c: Canvas,
  cx: number,
  cy: number,
  rx: number,
  ry: number,
  pTop: number,
  pBottom: number,
  hu: number,
  label: number,
  over: number = ANY,
): void {
  if (rx <= 0 || ry <= 0) return;
  const y0 = Math.max(0, Math.ceil(cy - ry));
  const y1 = Math.min(c.height - 1, Math.floor(cy + ry));
  for (let y = y0; y <= y1; y++) {
    const q = Math.abs(y - cy) / ry;
    const p = y < cy ? pTop : pBottom;
    const rest = 1 - q ** p;
    if (rest <= 0) continue;
    const half = rx * rest ** (1 / p);
    fillSpan(c, y, cx - half, cx + half, hu, label, over);
  }
}

/** Fill the pixels of row `y` whose centres lie in `[xa, xb]`. */
export function fillSpan(
  c: Canvas,
  y: number,
  xa: number,
  xb: number,
  hu: number,
  label: number,
  over: number = ANY,
): void {
  const x0 = Math.max(0, Math.ceil(xa));
  const x1 = Math.min(c.width - 1, Math.floor(xb));
  const base = y * c.width;
  const lab = c.label;
  const h = c.hu;
  if (over === ANY) {
    h.fill(hu, base + x0, base + x1 + 1);
    lab.fill(label, base + x0, base + x1 + 1);
    return;
  }
  for (let i = base + x0; i <= base + x1; i++) {
    if ((over >>> lab[i]!) & 1) {
      h[i] = hu;
      lab[i] = label;
    }
  }
}

/** Fill an axis-aligned ellipse. */
export function fillEllipse(
  c: Canvas,
  cx: number,
  cy: number,
  rx: number,
  ry: number,
  hu: number,
  label: number,
  over: number = ANY,
): void {
  fillSuperellipse(c, cx, cy, rx, ry, 2, 2, hu, label, over);
}

/** Fill an ellipse rotated by `angle` radians (its `rx` axis along the angle). */
export function fillRotatedEllipse(
  c: Canvas,
  cx: number,
  cy: number,
  rx: number,
  ry: number,
  angle: number,
  hu: number,
  label: number,
  over: number = ANY,
): void {
  if (rx <= 0 || ry <= 0) return;
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const r = Math.max(rx, ry);
  const x0 = Math.max(0, Math.ceil(cx - r));
  const x1 = Math.min(c.width - 1, Math.floor(cx + r));
  const y0 = Math.max(0, Math.ceil(cy - r));
  const y1 = Math.min(c.height - 1, Math.floor(cy + r));
  const irx2 = 1 / (rx * rx);
  const iry2 = 1 / (ry * ry);
  const lab = c.label;
  const h = c.hu;
  for (let y = y0; y <= y1; y++) {
    const dy = y - cy;
    const base = y * c.width;
    for (let x = x0; x <= x1; x++) {
      const dx = x - cx;
      const a = dx * cos + dy * sin;
      const b = -dx * sin + dy * cos;
      if (a * a * irx2 + b * b * iry2 > 1) continue;
      const i = base + x;
      if ((over >>> lab[i]!) & 1) {
        h[i] = hu;
        lab[i] = label;
      }
    }
  }
}

/**
 * Paint a capsule (a thick segment, as a vessel or a thin bone looks in a slice). With `soft`, the
 * HU blends into the background over the last pixel, so thin vessels are not jagged; the label is
 * set where the centre lies inside the radius.
 */
export function fillCapsule(
  c: Canvas,
  xa: number,
  ya: number,
  xb: number,
  yb: number,
  radius: number,
  hu: number,
  label: number,
  over: number = ANY,
  soft = false,
): void {
  if (radius <= 0) return;
  const pad = radius + (soft ? 1 : 0);
  const x0 = Math.max(0, Math.ceil(Math.min(xa, xb) - pad));
  const x1 = Math.min(c.width - 1, Math.floor(Math.max(xa, xb) + pad));
  const y0 = Math.max(0, Math.ceil(Math.min(ya, yb) - pad));
  const y1 = Math.min(c.height - 1, Math.floor(Math.max(ya, yb) + pad));
  const ex = xb - xa;
  const ey = yb - ya;
  const len2 = ex * ex + ey * ey;
  const inv = len2 > 0 ? 1 / len2 : 0;
  const lab = c.label;
  const h = c.hu;
  for (let y = y0; y <= y1; y++) {
    const base = y * c.width;
    for (let x = x0; x <= x1; x++) {
      const i = base + x;
      if (!((over >>> lab[i]!) & 1)) continue;
      let s = ((x - xa) * ex + (y - ya) * ey) * inv;
      s = s < 0 ? 0 : Math.min(s, 1);
      const dx = x - xa - s * ex;
      const dy = y - ya - s * ey;
      const d = Math.sqrt(dx * dx + dy * dy);
      if (d > pad) continue;
      if (soft) {
        const w = radius + 0.5 - d;
        if (w <= 0) continue;
        const k = Math.min(w, 1);
        h[i] = h[i]! + k * (hu - h[i]!);
        if (d <= radius) lab[i] = label;
      } else if (d <= radius) {
        h[i] = hu;
        lab[i] = label;
      }
    }
  }
}
