/**
 * A 5×7 bitmap font (capitals, digits, a little punctuation) for burning a short notice such as
 * "NOT FOR DIAGNOSTIC USE" into result images: no font file or canvas library needed.
 */

/** Each glyph: 7 rows of 5 pixels, top to bottom, "1" drawn. */
const GLYPHS: Readonly<Record<string, string>> = {
  A: '01110 10001 10001 11111 10001 10001 10001',
  B: '11110 10001 10001 11110 10001 10001 11110',
  C: '01110 10001 10000 10000 10000 10001 01110',
  D: '11110 10001 10001 10001 10001 10001 11110',
  E: '11111 10000 10000 11110 10000 10000 11111',
  F: '11111 10000 10000 11110 10000 10000 10000',
  G: '01110 10001 10000 10111 10001 10001 01111',
  H: '10001 10001 10001 11111 10001 10001 10001',
  I: '01110 00100 00100 00100 00100 00100 01110',
  J: '00111 00010 00010 00010 00010 10010 01100',
  K: '10001 10010 10100 11000 10100 10010 10001',
  L: '10000 10000 10000 10000 10000 10000 11111',
  M: '10001 11011 10101 10101 10001 10001 10001',
  N: '10001 10001 11001 10101 10011 10001 10001',
  O: '01110 10001 10001 10001 10001 10001 01110',
  P: '11110 10001 10001 11110 10000 10000 10000',
  Q: '01110 10001 10001 10001 10101 10010 01101',
  R: '11110 10001 10001 11110 10100 10010 10001',
  S: '01111 10000 10000 01110 00001 00001 11110',
  T: '11111 00100 00100 00100 00100 00100 00100',
  U: '10001 10001 10001 10001 10001 10001 01110',
  V: '10001 10001 10001 10001 10001 01010 00100',
  W: '10001 10001 10001 10101 10101 10101 01010',
  X: '10001 10001 01010 00100 01010 10001 10001',
  Y: '10001 10001 01010 00100 00100 00100 00100',
  Z: '11111 00001 00010 00100 01000 10000 11111',
  '0': '01110 10001 10011 10101 11001 10001 01110',
  '1': '00100 01100 00100 00100 00100 00100 01110',
  '2': '01110 10001 00001 00010 00100 01000 11111',
  '3': '11111 00010 00100 00010 00001 10001 01110',
  '4': '00010 00110 01010 10010 11111 00010 00010',
  '5': '11111 10000 11110 00001 00001 10001 01110',
  '6': '00110 01000 10000 11110 10001 10001 01110',
  '7': '11111 00001 00010 00100 01000 01000 01000',
  '8': '01110 10001 10001 01110 10001 10001 01110',
  '9': '01110 10001 10001 01111 00001 00010 01100',
  ' ': '00000 00000 00000 00000 00000 00000 00000',
  '-': '00000 00000 00000 11111 00000 00000 00000',
  '.': '00000 00000 00000 00000 00000 01100 01100',
  ':': '00000 01100 01100 00000 01100 01100 00000',
  '/': '00001 00001 00010 00100 01000 10000 10000',
  '(': '00010 00100 01000 01000 01000 00100 00010',
  ')': '01000 00100 00010 00010 00010 00100 01000',
};

/** Glyph width and height in font pixels. */
export const GLYPH_WIDTH = 5;
export const GLYPH_HEIGHT = 7;
/** Horizontal advance per character (one blank column between glyphs). */
export const GLYPH_ADVANCE = GLYPH_WIDTH + 1;

/** Whether `text` can be drawn (every character has a glyph; letters are drawn as capitals). */
export function drawable(text: string): boolean {
  return [...text.toUpperCase()].every((c) => GLYPHS[c] !== undefined);
}

/** Width in font pixels of one line of `text` (no trailing gap). */
export function textWidth(text: string): number {
  return text.length === 0 ? 0 : text.length * GLYPH_ADVANCE - 1;
}

/**
 * Call `plot(x, y)` for every drawn font pixel of `text` at scale 1, the top left of the first
 * glyph at (0, 0).
 */
export function rasterize(text: string, plot: (x: number, y: number) => void): void {
  [...text.toUpperCase()].forEach((c, i) => {
    const glyph = GLYPHS[c];
    if (glyph === undefined) throw new RangeError(`no glyph for ${JSON.stringify(c)}`);
    glyph.split(' ').forEach((row, y) => {
      for (let x = 0; x < GLYPH_WIDTH; x++) if (row[x] === '1') plot(i * GLYPH_ADVANCE + x, y);
    });
  });
}
