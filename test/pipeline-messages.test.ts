/**
 * The pipeline's wire formats (pipeline/messages.ts): every rejection is one line naming
 * the field; S3 event keys are URL-decoded; keys must stay under the study's prefix.
 */
import { describe, expect, it } from 'vitest';
import {
  decodeS3EventKey,
  heatmapKey,
  MessageError,
  makeS3EventBody,
  PIPELINE_DEFAULTS,
  parseCreateStudyRequest,
  parseInferenceMessage,
  parseManifest,
  parseManifestKey,
  parseS3EventBody,
  parseVotesMessage,
} from '../pipeline/index.js';

const where = { hospital: 'h1', studyId: 's1' };
const HASH = 'a'.repeat(64);
const slice = (name: string, extra: object = {}) => ({
  key: `incoming/h1/s1/ser/${name}`,
  sha256: HASH,
  size: 10,
  ...extra,
});
const manifest = (patch: object = {}) => ({
  version: 1,
  studyId: 's1',
  series: [{ id: 'ser', slices: [slice('1.dcm')] }],
  ...patch,
});

function error(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(MessageError);
    const message = (e as Error).message;
    expect(message).not.toContain('\n');
    return message;
  }
  throw new Error('expected a MessageError');
}

describe('manifest', () => {
  it('accepts a valid manifest with settings', () => {
    const parsed = parseManifest(JSON.stringify(manifest({ settings: { voteThreshold: 0.1 } })), where);
    expect(parsed.series[0]!.slices[0]!.key).toBe('incoming/h1/s1/ser/1.dcm');
    expect(parsed.settings?.voteThreshold).toBe(0.1);
  });

  it('names the field of every kind of error', () => {
    const bad = (m: unknown) =>
      error(() => parseManifest(typeof m === 'string' ? m : JSON.stringify(m), where));
    expect(bad('{')).toMatch(/^manifest: is not JSON \(/);
    expect(bad(manifest({ version: 2 }))).toBe('manifest.version: expected 1');
    expect(bad(manifest({ studyId: 's2' }))).toBe(
      "manifest.studyId: 's2' does not match the manifest's folder 's1'",
    );
    expect(bad(manifest({ extra: true }))).toBe('manifest.extra: unknown field');
    expect(bad(manifest({ series: [] }))).toBe('manifest.series: expected at least one series');
    expect(bad(manifest({ series: [{ id: 'ser', slices: [slice('1', { sha256: 'xyz' })] }] }))).toBe(
      'manifest.series[0].slices[0].sha256: expected 64 lowercase hex digits',
    );
    expect(bad(manifest({ series: [{ id: 'ser', slices: [slice('1', { size: 0 })] }] }))).toBe(
      'manifest.series[0].slices[0].size: expected at least 1 byte',
    );
    expect(
      bad(
        manifest({
          series: [{ id: 'ser', slices: [slice('1', { size: PIPELINE_DEFAULTS.maxSliceBytes + 1 })] }],
        }),
      ),
    ).toBe(`manifest.series[0].slices[0].size: expected at most ${PIPELINE_DEFAULTS.maxSliceBytes} bytes`);
    expect(
      bad(manifest({ series: [{ id: 'ser', slices: [{ ...slice('1'), key: 'incoming/h2/s1/ser/1' }] }] })),
    ).toBe("manifest.series[0].slices[0].key: 'incoming/h2/s1/ser/1' is not an object under incoming/h1/s1/");
    expect(
      bad(manifest({ series: [{ id: 'ser', slices: [{ ...slice('1'), key: 'incoming/h1/s1/../s2/x' }] }] })),
    ).toMatch(/^manifest\.series\[0\]\.slices\[0\]\.key: .* is not an object under/);
    expect(
      bad(
        manifest({
          series: [{ id: 'ser', slices: [{ ...slice('1'), key: 'incoming/h1/s1/manifest.json' }] }],
        }),
      ),
    ).toMatch(/^manifest\.series\[0\]\.slices\[0\]\.key:/);
    expect(bad(manifest({ series: [{ id: 'ser', slices: [slice('1'), slice('1')] }] }))).toBe(
      "manifest.series[0].slices[1].key: duplicate slice key 'incoming/h1/s1/ser/1'",
    );
    expect(
      bad(
        manifest({
          series: [
            { id: 'a', slices: [slice('1')] },
            { id: 'a', slices: [slice('2')] },
          ],
        }),
      ),
    ).toBe("manifest.series[1].id: duplicate series id 'a'");
    expect(bad(manifest({ settings: { voteThreshold: 1.5 } }))).toBe(
      "manifest.settings.voteThreshold: expected a multiple of 0.0001 from 0.0001 to 1, e.g. 0.3 (the paper) or 0.1 (the authors' code)",
    );
    expect(bad(manifest({ settings: { threshold: 0.1 } }))).toBe(
      'manifest.settings.threshold: unknown setting (known: voteThreshold)',
    );
    const many = Array.from({ length: PIPELINE_DEFAULTS.maxSlicesPerStudy / 2 + 1 }, (_, i) => slice(`${i}`));
    expect(
      bad(
        manifest({
          series: [
            { id: 'a', slices: many },
            { id: 'b', slices: many.map((s) => ({ ...s, key: s.key.replace('/ser/', '/b/') })) },
          ],
        }),
      ),
    ).toBe(
      `manifest.series: ${PIPELINE_DEFAULTS.maxSlicesPerStudy + 2} slices in all, expected at most ${PIPELINE_DEFAULTS.maxSlicesPerStudy}`,
    );
  });

  it('recognises manifest keys only', () => {
    expect(parseManifestKey('incoming/h1/s1/manifest.json')).toEqual({ hospital: 'h1', studyId: 's1' });
    expect(parseManifestKey('incoming/h1/s1/ser/manifest.json')).toBeUndefined();
    expect(parseManifestKey('results/h1/s1/manifest.json')).toBeUndefined();
    expect(parseManifestKey('incoming/h#1/s1/manifest.json')).toBeUndefined();
  });
});

describe('S3 events', () => {
  it('round-trips URL-encoded keys and recognises the test event', () => {
    const body = makeS3EventBody({ bucket: 'b', key: 'incoming/h1/s1/manifest.json', size: 12 });
    expect(parseS3EventBody(body)).toEqual({
      kind: 'records',
      records: [
        expect.objectContaining({
          bucket: 'b',
          key: 'incoming/h1/s1/manifest.json',
          size: 12,
          eventName: 'ObjectCreated:Put',
        }),
      ],
    });
    expect(decodeS3EventKey('incoming/a+b/%C3%A9%2B.json')).toBe('incoming/a b/é+.json');
    const spaced = parseS3EventBody(makeS3EventBody({ bucket: 'b', key: 'x y/é+.json', size: 1 }));
    expect(spaced.kind === 'records' && spaced.records[0]!.key).toBe('x y/é+.json');
    expect(
      parseS3EventBody(JSON.stringify({ Service: 'Amazon S3', Event: 's3:TestEvent', Bucket: 'b' })),
    ).toEqual({ kind: 'test' });
    expect(error(() => parseS3EventBody('{"Records":"x"}'))).toMatch(/^s3Event/);
  });
});

describe('inference and votes messages', () => {
  const inference = {
    hospital: 'h1',
    studyId: 's1',
    seriesId: 'ser',
    slices: [{ key: 'incoming/h1/s1/ser/1.dcm', sha256: HASH }],
  };
  const votes = {
    hospital: 'h1',
    studyId: 's1',
    model: { id: 'fpn@0123', sha256: HASH },
    votes: [
      {
        seriesId: 'ser',
        key: 'incoming/h1/s1/ser/1.dcm',
        probabilities: [0.7, 0.3],
        label: 'covid',
        heatmapKey: heatmapKey('h1', 's1', 'ser', 'incoming/h1/s1/ser/1.dcm'),
      },
    ],
  };

  it('parses valid messages', () => {
    expect(parseInferenceMessage(JSON.stringify(inference))).toEqual(inference);
    expect(parseVotesMessage(JSON.stringify(votes)).votes[0]!.heatmapKey).toBe(
      'results/h1/s1/heatmaps/ser/1.dcm.png',
    );
  });

  it('rejects keys outside the study and bad figures', () => {
    expect(
      error(() =>
        parseInferenceMessage(
          JSON.stringify({ ...inference, slices: [{ key: 'incoming/h2/s1/ser/1', sha256: HASH }] }),
        ),
      ),
    ).toBe("inference.slices[0].key: 'incoming/h2/s1/ser/1' is not an object under incoming/h1/s1/");
    expect(error(() => parseInferenceMessage(JSON.stringify({ ...inference, slices: [] })))).toBe(
      'inference.slices: expected at least one slice',
    );
    const vote = votes.votes[0]!;
    expect(
      error(() =>
        parseVotesMessage(JSON.stringify({ ...votes, votes: [{ ...vote, probabilities: [1.2, 0] }] })),
      ),
    ).toBe('votes.votes[0].probabilities[0]: expected a probability in [0, 1]');
    expect(
      error(() => parseVotesMessage(JSON.stringify({ ...votes, votes: [{ ...vote, label: 'maybe' }] }))),
    ).toBe("votes.votes[0].label: expected 'covid' or 'normal'");
    expect(
      error(() =>
        parseVotesMessage(
          JSON.stringify({ ...votes, votes: [{ ...vote, heatmapKey: 'results/h2/s1/x.png' }] }),
        ),
      ),
    ).toBe("votes.votes[0].heatmapKey: 'results/h2/s1/x.png' is not under results/h1/s1/");
    expect(error(() => parseVotesMessage(JSON.stringify({ ...votes, model: { id: 'm' } })))).toBe(
      'votes.model.sha256: is missing',
    );
  });

  it('carries permanent slice failures, with or without votes, scoped to the study', () => {
    const failure = { seriesId: 'ser', key: 'incoming/h1/s1/ser/2.dcm', reason: '2.dcm: sha256 mismatch' };
    const onlyFailures = { ...votes, votes: [], failures: [failure] };
    expect(parseVotesMessage(JSON.stringify(onlyFailures)).failures).toEqual([failure]);
    expect(parseVotesMessage(JSON.stringify({ ...votes, failures: [failure] })).votes).toHaveLength(1);
    expect(error(() => parseVotesMessage(JSON.stringify({ ...votes, votes: [] })))).toBe(
      'votes.votes: expected at least one vote or failure',
    );
    expect(
      error(() =>
        parseVotesMessage(
          JSON.stringify({ ...onlyFailures, failures: [{ ...failure, key: 'incoming/h2/s1/ser/2.dcm' }] }),
        ),
      ),
    ).toBe("votes.failures[0].key: 'incoming/h2/s1/ser/2.dcm' is not an object under incoming/h1/s1/");
    expect(
      error(() =>
        parseVotesMessage(JSON.stringify({ ...onlyFailures, failures: [{ ...failure, reason: 'a\nb' }] })),
      ),
    ).toBe('votes.failures[0].reason: expected one line');
  });
});

describe('POST /studies body', () => {
  it('checks names and duplicates', () => {
    const body = (slices: object[]) => JSON.stringify({ series: [{ id: 'ser', slices }] });
    expect(
      parseCreateStudyRequest(body([{ name: '1.dcm', sha256: HASH, size: 3 }])).series[0]!.slices[0]!.name,
    ).toBe('1.dcm');
    expect(error(() => parseCreateStudyRequest(body([{ name: 'a/b', sha256: HASH, size: 3 }])))).toMatch(
      /^body\.series\[0\]\.slices\[0\]\.name: /,
    );
    expect(error(() => parseCreateStudyRequest(body([{ name: 'a', sha256: HASH, size: 3, key: 'x' }])))).toBe(
      'body.series[0].slices[0].key: unknown field',
    );
  });
});
