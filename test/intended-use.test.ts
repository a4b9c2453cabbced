/**
 * A model's intended use (`intendedUse` in its manifest): read and checked, not diagnostic when
 * absent, written by `model seed` (and kept by `model materialize`), and carried by the votes
 * message, the report and the SNS notification. `diagnose`, `import-keras`, `train` and the whole
 * pipeline are checked in their own files (diagnose, default-model, keras-import, train,
 * gpu-worker, pipeline-aggregate, pipeline-e2e).
 */
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  combinedIntendedUse,
  intendedUseOf,
  parseIntendedUse,
  RESEARCH_USE,
  UNDECLARED_INTENDED_USE,
} from '../core/intended-use.js';
import { buildReport, decide } from '../lambdas/aggregate/report.js';
import { loadClassifier } from '../models/classifier.js';
import { defaultModelDir } from '../models/default-model.js';
import { ModelFolderError, readManifest } from '../models/io.js';
import type { StoredVote, StudyRecord } from '../pipeline/index.js';
import { notificationFor, parseStudyNotification, parseVotesMessage } from '../pipeline/index.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-intended-use-');
const DEMO_USE = { diagnostic: false, statement: 'demonstration on synthetic phantoms, not for diagnosis' };
const CLINICAL = { diagnostic: true, statement: 'validated on the site’s own COVID-CTset fold' };
const HASH = 'a'.repeat(64);

describe('the manifest’s intendedUse', () => {
  it('counts a manifest without one as not for diagnostic use', () => {
    expect(intendedUseOf(undefined, 'm')).toEqual(UNDECLARED_INTENDED_USE);
    expect(intendedUseOf({}, 'm')).toEqual(UNDECLARED_INTENDED_USE);
    expect(UNDECLARED_INTENDED_USE.diagnostic).toBe(false);
    expect(RESEARCH_USE.diagnostic).toBe(false);
    expect(intendedUseOf({ intendedUse: CLINICAL }, 'm')).toEqual(CLINICAL);
  });

  it.each([
    ['a string', 'diagnostic'],
    ['diagnostic not a boolean', { diagnostic: 'yes', statement: 'x' }],
    ['an empty statement', { diagnostic: false, statement: ' ' }],
    ['two lines', { diagnostic: false, statement: 'a\nb' }],
    ['301 characters', { diagnostic: false, statement: 'x'.repeat(301) }],
  ])('refuses %s in one line naming the file', (_, value) => {
    expect(() => parseIntendedUse(value, 'm/manifest.json')).toThrow(
      'm/manifest.json: intendedUse must be { diagnostic: true|false, statement: one line of 1 to 300 characters }',
    );
  });

  it('is diagnostic for a mixed decision only when every model is', () => {
    expect(combinedIntendedUse([CLINICAL, DEMO_USE])).toEqual(DEMO_USE);
    expect(combinedIntendedUse([CLINICAL, undefined])).toEqual(UNDECLARED_INTENDED_USE);
    expect(combinedIntendedUse([CLINICAL, CLINICAL])).toEqual(CLINICAL);
    expect(combinedIntendedUse([])).toEqual(UNDECLARED_INTENDED_USE);
  });

  it('is the demonstration statement in the shipped default model', async () => {
    expect((await readManifest(defaultModelDir()))?.intendedUse).toEqual(DEMO_USE);
    expect((await loadClassifier(defaultModelDir())).intendedUse).toEqual(DEMO_USE);
  });

  it('reads a model folder without one as not diagnostic, and refuses a damaged one naming the manifest', async () => {
    const dir = join(work, 'no-intended-use');
    await cp(defaultModelDir(), dir, { recursive: true });
    const path = join(dir, 'manifest.json');
    const { intendedUse: _, ...rest } = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    await writeFile(path, JSON.stringify(rest));
    expect((await loadClassifier(dir)).intendedUse).toEqual(UNDECLARED_INTENDED_USE);

    await writeFile(path, JSON.stringify({ ...rest, intendedUse: { diagnostic: 1, statement: 'x' } }));
    const error = await readManifest(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelFolderError);
    expect((error as Error).message).toBe(
      `${path}: intendedUse must be { diagnostic: true|false, statement: one line of 1 to 300 characters }`,
    );
  });
});

describe('covidct model seed and materialize', () => {
  it('write research use unless stated otherwise, and materialize keeps the source’s', async () => {
    const data = join(work, 'dataset');
    const made = runCli(['phantom', data, '--dataset', '--patients', '10', '--slices', '2']);
    expect(made.code, made.stderr).toBe(0);
    const seed = (out: string, ...extra: string[]) =>
      runCli([
        'model',
        'seed',
        out,
        '--calibrate-csv',
        join(data, 'CSV', 'train1.csv'),
        '--images',
        join(data, 'images'),
        '--input-size',
        '96',
        '--width',
        '1/16',
        '--calibration-slices',
        '2',
        ...extra,
      ]);
    const manifest = async (dir: string) => (await readManifest(dir))?.intendedUse;
    const plain = seed(join(work, 'seeded'));
    expect(plain.code, plain.stderr).toBe(0);
    expect(await manifest(join(work, 'seeded'))).toEqual(RESEARCH_USE);

    const stated = seed(join(work, 'seeded-clinical'), '--intended-use', CLINICAL.statement, '--diagnostic');
    expect(stated.code, stated.stderr).toBe(0);
    expect(await manifest(join(work, 'seeded-clinical'))).toEqual(CLINICAL);

    const materialized = runCli(['model', 'materialize', join(work, 'seeded-clinical'), join(work, 'plain')]);
    expect(materialized.code, materialized.stderr).toBe(0);
    expect(await manifest(join(work, 'plain'))).toEqual(CLINICAL);

    const refused = seed(join(work, 'never'), '--diagnostic');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      '--diagnostic needs --intended-use STATEMENT saying what the model is validated for',
    );
  }, 180_000);

  it('train refuses --diagnostic without a statement before reading any data', () => {
    const run = runCli(['train', '--data', join(work, 'nowhere'), '--diagnostic']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('--diagnostic needs --intended-use STATEMENT');
  });
});

describe('every decision carries it', () => {
  const votesBody = (model: object) =>
    JSON.stringify({
      hospital: 'h1',
      studyId: 's1',
      model,
      votes: [
        { seriesId: 'ser', key: 'incoming/h1/s1/ser/1.dcm', probabilities: [0.7, 0.3], label: 'covid' },
      ],
    });

  it('the votes message: the worker’s report kept, checked, optional', () => {
    expect(parseVotesMessage(votesBody({ id: 'm/1', sha256: HASH, intendedUse: DEMO_USE })).model).toEqual({
      id: 'm/1',
      sha256: HASH,
      intendedUse: DEMO_USE,
    });
    expect(parseVotesMessage(votesBody({ id: 'm/1', sha256: HASH })).model.intendedUse).toBeUndefined();
    expect(() =>
      parseVotesMessage(
        votesBody({ id: 'm/1', sha256: HASH, intendedUse: { diagnostic: false, statement: 'a\nb' } }),
      ),
    ).toThrow(/intendedUse/);
  });

  it('one rule for the manifest and the votes message: what parseIntendedUse refuses, the message refuses', () => {
    const refused = [
      { diagnostic: false, statement: '   ' },
      { diagnostic: false, statement: '' },
      { diagnostic: false, statement: 'a\rb' },
      { diagnostic: false, statement: 'x'.repeat(301) },
      { diagnostic: 'no', statement: 'x' },
    ];
    for (const intendedUse of refused) {
      expect(() => parseIntendedUse(intendedUse, 'm')).toThrow(/intendedUse/);
      expect(() => parseVotesMessage(votesBody({ id: 'm/1', sha256: HASH, intendedUse }))).toThrow(
        /intendedUse/,
      );
    }
  });

  const study = {
    hospital: 'h1',
    studyId: 's1',
    status: 'CLASSIFYING',
    threshold: 0.3,
    selectedCount: 2,
    expectedVotes: 2,
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    series: [
      {
        id: 'ser',
        status: 'SELECTED',
        threshold: 100,
        selectedCount: 2,
        slices: [
          { key: 'incoming/h1/s1/ser/1.dcm', darkPixels: 500, selected: true },
          { key: 'incoming/h1/s1/ser/2.dcm', darkPixels: 500, selected: true },
        ],
      },
    ],
    timings: { createdAt: '2026-01-01T00:00:00.000Z' },
    enqueued: true,
    notified: false,
  } as unknown as StudyRecord;
  const vote = (n: number, modelId: string, use?: object): StoredVote =>
    ({
      seriesId: 'ser',
      key: `incoming/h1/s1/ser/${n}.dcm`,
      probabilities: [0.9, 0.1],
      label: 'covid',
      modelId,
      modelSha256: HASH,
      ...(use ? { modelIntendedUse: use } : {}),
      recordedAt: '2026-01-01T00:00:01.000Z',
    }) as StoredVote;

  it('the report: the voting model’s, not diagnostic when any voting model is not', () => {
    const report = (votes: StoredVote[]) => buildReport(study, votes, decide(study, votes), new Date());
    expect(report([vote(1, 'a/1', CLINICAL), vote(2, 'a/1', CLINICAL)]).intendedUse).toEqual(CLINICAL);
    const mixed = report([vote(1, 'a/1', CLINICAL), vote(2, 'b/1', DEMO_USE)]);
    expect(mixed.intendedUse).toEqual(DEMO_USE);
    expect(mixed.models.map((m) => m.intendedUse)).toEqual([CLINICAL, DEMO_USE]);
    expect(report([vote(1, 'a/1'), vote(2, 'a/1')]).intendedUse).toEqual(UNDECLARED_INTENDED_USE);
  });

  it('the SNS notification: on COMPLETE, from the study (not diagnostic when the study has none)', () => {
    const complete = {
      ...study,
      status: 'COMPLETE',
      outcome: { decision: 'covid', covidFraction: 1, covidCount: 2, classifiedCount: 2 },
    } as StudyRecord;
    const sent = (s: StudyRecord) => parseStudyNotification(JSON.stringify(notificationFor(s)));
    expect(sent({ ...complete, intendedUse: CLINICAL }).intendedUse).toEqual(CLINICAL);
    expect(sent(complete).intendedUse).toEqual(UNDECLARED_INTENDED_USE);
    expect(sent({ ...study, status: 'FAILED', reason: 'x' } as StudyRecord).intendedUse).toBeUndefined();
  });
});
