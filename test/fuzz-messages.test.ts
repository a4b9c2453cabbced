/**
 * Fuzzing the pipeline's message parsers with mutated JSON (issue 7, item 1): a parsed value or a
 * one-line {@link MessageError} naming the field, never another exception, never slow; and the
 * message regressions the fuzzer found, as fixed cases.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  MessageError,
  parseCreateStudyRequest,
  parseInferenceMessage,
  parseManifest,
} from '../pipeline/index.js';
import { checkMessage, fuzzParameters, printTallies, tally } from './helpers/fuzz.js';
import {
  applyEdit,
  applyTextEdit,
  HOSPITAL,
  jsonEdit,
  key,
  PARSERS,
  SHA,
  STUDY,
  textEdit,
  VALID,
} from './helpers/fuzz-messages.js';

afterAll(printTallies);

describe('fuzzing the message parsers', () => {
  for (const [kind, parse] of Object.entries(PARSERS)) {
    it(`${kind}: a parsed value or a one-line MessageError naming the field`, {
      timeout: 120_000,
    }, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(jsonEdit, { maxLength: 4 }), textEdit, async (edits, text) => {
          const value = edits.reduce<unknown>((v, e) => applyEdit(v, e), VALID[kind]);
          const json = applyTextEdit(JSON.stringify(value) ?? 'null', text);
          const t = tally(`message ${kind}`);
          const started = performance.now();
          try {
            parse(json);
            t.decoded++;
          } catch (error) {
            if (!(error instanceof MessageError)) {
              const what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
              throw new Error(`not a MessageError: ${what.split('\n')[0]}`);
            }
            checkMessage(error, kind === 'body' ? 'body' : kind);
            t.rejected++;
          }
          const ms = performance.now() - started;
          if (ms > 1000) throw new Error(`took ${ms.toFixed(0)} ms`);
          t.cases++;
          t.ms += ms;
          t.slowestMs = Math.max(t.slowestMs, ms);
        }),
        fuzzParameters(400),
      );
    });
  }
});

// -----------------------------------------------------------------------------------------------
// Regressions: what the fuzzer found, as fixed cases

describe('message regressions found by fuzzing', () => {
  it('keeps messages on one line whatever the input quotes: keys with line breaks, U+2028 in JSON, long values', () => {
    const cases: [() => unknown, RegExp][] = [
      [
        () => parseCreateStudyRequest(JSON.stringify({ ...(VALID.body as object), 'a\nb': 1 })),
        /^body\['a\\u000ab'\]: unknown field$/,
      ],
      [
        () =>
          parseManifest(`\u2028${JSON.stringify(VALID.manifest)}`, { hospital: HOSPITAL, studyId: STUDY }),
        /^manifest: is not JSON/,
      ],
      [() => parseInferenceMessage(JSON.stringify('line\r\nbreak')), /^inference: .*line\\u000d\\u000abreak/],
      [
        () =>
          parseInferenceMessage(
            JSON.stringify({
              ...(VALID.inference as object),
              slices: [{ key: `${key('a')}\n${'x'.repeat(900)}`, sha256: SHA }],
            }),
          ),
        /^inference\.slices\[0\]\.key: 'incoming\/hospital-a\/study-1\/S1\/a\\u000axxx.*…$/,
      ],
    ];
    for (const [parse, pattern] of cases) {
      const error = (() => {
        try {
          parse();
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(error).toBeInstanceOf(MessageError);
      expect((error as Error).message).toMatch(pattern);
      expect((error as Error).message).not.toMatch(/[\r\n\u2028\u2029]/);
      expect((error as Error).message.length).toBeLessThan(700);
    }
  });
});
