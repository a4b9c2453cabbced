/**
 * Valid pipeline messages and the JSON and text edits the fuzzer applies to them: hostile strings,
 * added, removed and replaced fields, grown arrays, truncated or deeply nested text.
 */
import fc from 'fast-check';
import {
  makeS3EventBody,
  parseCreateStudyRequest,
  parseInferenceMessage,
  parseManifest,
  parseS3EventBody,
  parseStudyNotification,
  parseVotesMessage,
  sliceKey,
} from '../../pipeline/index.js';

// The message parsers

/** The hospital of every valid message. */
export const HOSPITAL = 'hospital-a';
/** The study of every valid message. */
export const STUDY = 'study-1';
/** A SHA-256 (hex) for every slice. */
export const SHA = 'a'.repeat(64);
/** A slice's object key in series S1 of {@link STUDY}. */
export const key = (name: string) => sliceKey(HOSPITAL, STUDY, 'S1', name);

/** A valid message of each kind the parsers read, by kind. */
export const VALID: Readonly<Record<string, unknown>> = {
  manifest: {
    version: 1,
    studyId: STUDY,
    series: [
      {
        id: 'S1',
        slices: [
          { key: key('1.dcm'), sha256: SHA, size: 1000 },
          { key: key('2.dcm'), sha256: SHA, size: 10 },
        ],
      },
    ],
    settings: { voteThreshold: 0.3 },
  },
  body: {
    series: [{ id: 'S1', slices: [{ name: '1.dcm', sha256: SHA, size: 1000 }] }],
    settings: { voteThreshold: 0.1 },
  },
  s3Event: JSON.parse(
    makeS3EventBody({ bucket: 'b', key: `incoming/${HOSPITAL}/${STUDY}/manifest.json`, size: 10 }),
  ),
  inference: {
    hospital: HOSPITAL,
    studyId: STUDY,
    seriesId: 'S1',
    slices: [{ key: key('1.dcm'), sha256: SHA }],
    threshold: 0.3,
  },
  votes: {
    hospital: HOSPITAL,
    studyId: STUDY,
    model: { id: 'm@0123456789ab', sha256: SHA },
    votes: [
      {
        seriesId: 'S1',
        key: key('1.dcm'),
        probabilities: [0.9, 0.1],
        label: 'covid',
        heatmapKey: `results/${HOSPITAL}/${STUDY}/heatmaps/S1/1.dcm.png`,
      },
    ],
    failures: [{ seriesId: 'S1', key: key('2.dcm'), reason: 'x: damaged' }],
  },
  notification: {
    version: 1,
    hospital: HOSPITAL,
    studyId: STUDY,
    status: 'COMPLETE',
    decision: 'covid',
    covidFraction: 0.5,
    selectedCount: 2,
    classifiedCount: 2,
    covidCount: 1,
    threshold: 0.3,
    finishedAt: '2024-01-01T00:00:00.000Z',
  },
};

/** The parser of each kind of {@link VALID} message. */
export const PARSERS: Readonly<Record<string, (json: string) => unknown>> = {
  manifest: (json) => parseManifest(json, { hospital: HOSPITAL, studyId: STUDY }),
  body: parseCreateStudyRequest,
  s3Event: parseS3EventBody,
  inference: parseInferenceMessage,
  votes: parseVotesMessage,
  notification: parseStudyNotification,
};

/** Strings a hostile sender would try: traversal, other prefixes, control characters, odd Unicode. */
const HOSTILE_STRINGS = [
  '',
  '..',
  '../../etc/passwd',
  `incoming/${HOSPITAL}/${STUDY}/../other/S1/1.dcm`,
  `incoming/${HOSPITAL}/${STUDY}/S1/%2e%2e/1.dcm`,
  `incoming/hospital-b/${STUDY}/S1/1.dcm`,
  `incoming/${HOSPITAL}/${STUDY}/manifest.json`,
  `incoming/${HOSPITAL}/${STUDY}/S1/a\nb.dcm`,
  'line\r\nbreak',
  'x\u2028y',
  '\u0000',
  '\ud800',
  'é.dcm',
  '__proto__',
  'constructor',
  'a'.repeat(5000),
];

const jsonish: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(...HOSTILE_STRINGS),
  fc.constantFrom(-1, 0, 1, 0.5, 1e308, -0, 2 ** 53, Number.MAX_SAFE_INTEGER, 4 * 1024 * 1024 + 1),
);

type JsonEdit =
  | { readonly kind: 'replace'; readonly path: readonly number[]; readonly value: unknown }
  | { readonly kind: 'add'; readonly path: readonly number[]; readonly name: string; readonly value: unknown }
  | { readonly kind: 'remove'; readonly path: readonly number[] }
  | { readonly kind: 'grow'; readonly path: readonly number[]; readonly times: number };

/** An edit of a parsed message: replace, add or remove a field, or grow an array. */
export const jsonEdit: fc.Arbitrary<JsonEdit> = fc.oneof(
  fc.record({
    kind: fc.constant('replace' as const),
    path: fc.array(fc.nat(), { maxLength: 6 }),
    value: jsonish,
  }),
  fc.record({
    kind: fc.constant('add' as const),
    path: fc.array(fc.nat(), { maxLength: 6 }),
    name: fc.oneof(fc.string(), fc.constantFrom(...HOSTILE_STRINGS)),
    value: jsonish,
  }),
  fc.record({
    kind: fc.constant('remove' as const),
    path: fc.array(fc.nat(), { minLength: 1, maxLength: 6 }),
  }),
  fc.record({
    kind: fc.constant('grow' as const),
    path: fc.array(fc.nat(), { maxLength: 6 }),
    times: fc.constantFrom(2, 65, 257, 2001, 10_000),
  }),
);

/** Walk `path` (indices into the children) from the root; the last step picks the child to edit. */
export function applyEdit(root: unknown, edit: JsonEdit): unknown {
  const copy = structuredClone(root) as unknown;
  if (edit.path.length === 0 && edit.kind === 'replace') return edit.value;
  let node = copy;
  const steps = edit.kind === 'remove' || edit.kind === 'replace' ? edit.path.slice(0, -1) : edit.path;
  for (const step of steps) {
    if (typeof node !== 'object' || node === null) return copy;
    const keys = Object.keys(node);
    if (keys.length === 0) return copy;
    node = (node as Record<string, unknown>)[keys[step % keys.length]!];
  }
  if (typeof node !== 'object' || node === null) return copy;
  const container = node as Record<string, unknown>;
  const keys = Object.keys(container);
  const last = edit.path[edit.path.length - 1] ?? 0;
  switch (edit.kind) {
    case 'replace':
    case 'remove': {
      if (keys.length === 0) return copy;
      const k = keys[last % keys.length]!;
      if (edit.kind === 'replace') container[k] = edit.value;
      else if (Array.isArray(container)) container.splice(Number(k), 1);
      else delete container[k];
      return copy;
    }
    case 'add':
      if (Array.isArray(container)) container.push(edit.value);
      else
        Object.defineProperty(container, edit.name, {
          value: edit.value,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      return copy;
    case 'grow':
      // Repeat an array's first element (10,000 slices, 257 votes, …).
      if (Array.isArray(container) && container.length > 0) {
        const first = container[0];
        // Bounded (4 MiB of JSON per edit): growing a grown array again would build 10,000² objects
        // and exhaust the test's own heap (the long form did) before any parser saw them.
        const size = (JSON.stringify(first) ?? 'null').length + 1;
        const times = Math.min(edit.times, Math.max(1, Math.floor((4 * 1024 * 1024) / size)));
        for (let i = 1; i < times; i++) container.push(structuredClone(first));
      }
      return copy;
  }
}

type TextEdit =
  | { readonly kind: 'none' }
  | { readonly kind: 'truncate'; readonly at: number }
  | { readonly kind: 'char'; readonly at: number; readonly char: string }
  | { readonly kind: 'nest'; readonly depth: number };

/** An edit of a message's JSON text: none, truncation, one character, deep nesting. */
export const textEdit: fc.Arbitrary<TextEdit> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: 'none' as const }) },
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('char' as const),
    at: fc.nat(),
    char: fc.oneof(
      fc.string({ minLength: 1, maxLength: 2 }),
      fc.constantFrom('\n', '\r', '"', '\\', '\u2028', '\ud800', '\u0000', '{', ']'),
    ),
  }),
  fc.record({ kind: fc.constant('nest' as const), depth: fc.constantFrom(100, 10_000, 100_000) }),
);

/** Apply a {@link textEdit} to JSON text. */
export function applyTextEdit(text: string, edit: TextEdit): string {
  switch (edit.kind) {
    case 'none':
      return text;
    case 'truncate':
      return text.slice(0, edit.at % (text.length + 1));
    case 'char': {
      const at = edit.at % (text.length + 1);
      return text.slice(0, at) + edit.char + text.slice(at + 1);
    }
    case 'nest':
      return `${'['.repeat(edit.depth)}${text}${']'.repeat(edit.depth)}`;
  }
}
