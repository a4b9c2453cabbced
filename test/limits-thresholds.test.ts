/**
 * Vote thresholds: one check (a multiple of 0.0001 in [0.0001, 1]) for the API body, the manifest,
 * the CLI and the CDK context (issue 14, section 3); `1e-300` was a 500 and a study stuck in
 * SELECTING. Against the local stack of test/helpers/limits-stack.ts.
 */
import { describe, expect, it } from 'vitest';
import { parseVoteThreshold as parseVoteThresholdText, voteThresholdValue } from '../core/vote.js';
import { parseCreateStudyRequest, parseManifest } from '../pipeline/index.js';
import {
  A,
  api,
  createStudy,
  notifiedStudy,
  put,
  sha,
  store,
  tinySlice,
  uploadSlices,
  useLimitsStack,
  waitFor,
} from './helpers/limits-stack.js';

useLimitsStack();

describe('vote thresholds: one check, a multiple of 0.0001 in [0.0001, 1]', () => {
  const refused = [
    1e-300,
    0,
    -0.3,
    1.00001,
    0.12345,
    5e-5,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    '0.3',
    null,
  ];

  it('accepts the grid and refuses the rest, everywhere a threshold comes in', () => {
    for (const t of [0.0001, 0.1, 0.3, 0.25, 0.9999, 1]) expect(voteThresholdValue(t)).toBe(t);
    expect(voteThresholdValue(0.1 + 0.2)).toBe(0.3); // 0.30000000000000004 lands on the grid
    for (const t of refused) expect(voteThresholdValue(t), String(t)).toBeUndefined();
    expect(() => parseVoteThresholdText('1e-300', 'context voteThreshold')).toThrow(
      /^context voteThreshold: '1e-300' is not allowed, expected a multiple of 0\.0001 from 0\.0001 to 1/,
    );
    expect(() => parseVoteThresholdText('', '--threshold')).toThrow(/^--threshold: '' is not allowed/);

    const body = (t: unknown) =>
      JSON.stringify({
        series: [{ id: 's', slices: [{ name: 'a', sha256: 'a'.repeat(64), size: 1 }] }],
        settings: { voteThreshold: t },
      });
    expect(parseCreateStudyRequest(body(0.0001)).settings?.voteThreshold).toBe(0.0001);
    for (const t of refused) {
      expect(() => parseCreateStudyRequest(body(t)), String(t)).toThrow(
        /^body\.settings\.voteThreshold: expected/,
      );
    }
    const where = { hospital: 'h', studyId: 's' };
    const manifest = (t: unknown) =>
      JSON.stringify({
        version: 1,
        studyId: 's',
        series: [{ id: 'x', slices: [{ key: 'incoming/h/s/x/a', sha256: 'a'.repeat(64), size: 1 }] }],
        settings: { voteThreshold: t },
      });
    expect(parseManifest(manifest(1), where).settings?.voteThreshold).toBe(1);
    for (const t of refused) {
      expect(() => parseManifest(manifest(t), where), String(t)).toThrow(
        /^manifest\.settings\.voteThreshold: expected/,
      );
    }
  });

  it('the CDK context and the CLI options refuse 1e-300 with one line naming the setting', async () => {
    const { settingsFromContext } = await import('../cdk/settings.js');
    const node = (context: Record<string, string>) =>
      ({ tryGetContext: (key: string) => context[key] }) as unknown as Parameters<
        typeof settingsFromContext
      >[0];
    expect(settingsFromContext(node({ voteThreshold: '0.25' })).voteThreshold).toBe(0.25);
    for (const t of ['1e-300', '0', '1.00001', '0.12345', 'NaN', 'abc']) {
      expect(() => settingsFromContext(node({ voteThreshold: t })), t).toThrow(
        new RegExp(`^context voteThreshold: '${t}' is not allowed, expected a multiple of 0\\.0001`),
      );
    }
    const { parseVoteThreshold } = await import('../cli/commands/diagnose.js');
    expect(parseVoteThreshold('0.3')).toBe(0.3);
    expect(() => parseVoteThreshold('1e-300')).toThrow(
      /^--threshold: '1e-300' is not allowed, expected a multiple of 0\.0001/,
    );
    const { runCli } = await import('./helpers/cli.js');
    for (const command of [
      ['upload', '.', '--api', 'http://127.0.0.1:9', '--key', 'k', '--threshold', '1e-300'],
      ['dev', '--threshold', '0.12345'],
    ]) {
      const run = runCli(command);
      expect(run.code, run.stderr).toBe(1);
      expect(run.stderr).toMatch(
        /--threshold: '(1e-300|0\.12345)' is not allowed, expected a multiple of 0\.0001/,
      );
      // One line of reason (commander adds its usage hint below it, as for every option).
      expect(run.stderr.split('\n')[0]).toMatch(/'(1e-300|0\.12345)' is not allowed/);
    }
  });

  it('POST /studies: 400 with one line naming body.settings.voteThreshold (1e-300 was a 500)', async () => {
    const series = [{ id: 'S1', slices: [{ name: 'a.tif', bytes: tinySlice(true, 1) }] }];
    const slices = series[0]!.slices.map((x) => ({
      name: x.name,
      sha256: sha(x.bytes),
      size: x.bytes.length,
    }));
    const bodies: [string, string][] = [
      ['1e-300', '1e-300'],
      ['0', '0'],
      ['1.00001', '1.00001'],
      ['0.12345', '0.12345'],
      ['1e400 (Infinity)', '1e400'],
      ['"0.3" (a string)', '"0.3"'],
      ['null (NaN in JSON)', 'null'],
    ];
    for (const [what, raw] of bodies) {
      const res = await api('/studies', {
        body: `{"series":${JSON.stringify([{ id: 'S1', slices }])},"settings":{"voteThreshold":${raw}}}`,
      });
      expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(400);
      expect(res.body.message).toMatch(/^body\.settings\.voteThreshold: expected/);
      expect(res.body.message).not.toMatch(/[\r\n]/);
    }
    for (const t of [0.0001, 1]) {
      const created = await createStudy(series, { settings: { voteThreshold: t } });
      expect((await store.getStudy(A.hospital, created.studyId))?.threshold).toBe(t);
    }
  });

  it('a manifest with voteThreshold 1e-300 ends FAILED with the reason (was retried, stuck in SELECTING)', async () => {
    const bytes = tinySlice(true, 2);
    const created = await createStudy([{ id: 'S1', slices: [{ name: 'a.tif', bytes }] }]);
    await uploadSlices(created, new Map([[created.uploads[0]!.key, bytes]]));
    const manifest = { ...(created.manifest.body as object), settings: { voteThreshold: 1e-300 } };
    await put(created.manifest.url, JSON.stringify(manifest));
    const study = await waitFor(created.studyId, ['FAILED', 'CLASSIFYING', 'COMPLETE'], 30);
    expect(study.status).toBe('FAILED');
    expect(study.reason).toMatch(
      /^manifest\.settings\.voteThreshold: expected a multiple of 0\.0001 from 0\.0001 to 1/,
    );
    expect((await notifiedStudy(created.studyId)).notified).toBe(true);
  });
});
