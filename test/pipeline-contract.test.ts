/**
 * The pipeline's contract, where one function now owns a rule: the route table and its path
 * matcher (CDK, the api Lambda and the local API server use them), the key layout's parse, the
 * one bounded S3 read and its not-found error (against the local S3 server), the API's mapping of
 * domain errors to statuses, and the correlation keys appended once per record.
 */

import { Logger } from '@aws-lambda-powertools/logger';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it, vi } from 'vitest';
import { httpStatusOf } from '../lambdas/api/handler.js';
import {
  API_RESOURCES,
  API_ROUTES,
  CursorError,
  compileResources,
  findApiRoute,
  HttpError,
  MessageError,
  manifestKey,
  matchResource,
  ObjectNotFoundError,
  ObjectTooLargeError,
  parseManifestKey,
  parseStudyKey,
  readObject,
  sliceKey,
  withStudyKeys,
} from '../pipeline/index.js';
import { useLocalStack } from './helpers/local-stack.js';

describe('route table', () => {
  it('lists each resource once and finds a route by method and resource', () => {
    expect(API_RESOURCES).toEqual(['/studies', '/studies/{id}', '/studies/{id}/report']);
    expect(findApiRoute('post', '/studies')?.name).toBe('createStudy');
    expect(findApiRoute('GET', '/studies/{id}/report')?.name).toBe('getReport');
    expect(findApiRoute('DELETE', '/studies/{id}')).toBeUndefined();
    expect(API_ROUTES.filter((r) => 'validatesBody' in r && r.validatesBody).map((r) => r.name)).toEqual([
      'createStudy',
    ]);
  });

  it('matches paths to resources, literal segments first, parameters decoded', () => {
    const compiled = compileResources([...API_RESOURCES, '/studies/new']);
    expect(matchResource(compiled, '/studies/new')).toEqual({
      resource: '/studies/new',
      pathParameters: null,
    });
    expect(matchResource(compiled, '/studies/a%20b/report')).toEqual({
      resource: '/studies/{id}/report',
      pathParameters: { id: 'a b' },
    });
    // Invalid percent-encoding is passed on as sent.
    expect(matchResource(compiled, '/studies/%E0/')?.pathParameters).toEqual({ id: '%E0' });
    expect(matchResource(compiled, '/other')).toBeUndefined();
  });
});

describe('key layout', () => {
  it('parses any key under a study, and a manifest key only as one', () => {
    expect(parseStudyKey(sliceKey('h1', 's1', 'series-1', 'slice-0001.dcm'))).toEqual({
      hospital: 'h1',
      studyId: 's1',
    });
    expect(parseManifestKey(manifestKey('h1', 's1'))).toEqual({ hospital: 'h1', studyId: 's1' });
    expect(parseManifestKey(sliceKey('h1', 's1', 'series-1', 'manifest.json'))).toBeUndefined();
    expect(parseStudyKey('results/h1/s1/report.json')).toBeUndefined();
    expect(parseStudyKey('incoming/h 1/s1/x')).toBeUndefined();
    expect(parseStudyKey('incoming/h1/s1')).toBeUndefined();
  });
});

describe('API status of domain errors', () => {
  it('maps HttpError to its status, bad input to 400, anything else to none (a 500)', () => {
    expect(httpStatusOf(new HttpError(409, 'x'))).toBe(409);
    expect(httpStatusOf(new MessageError('body', 'is not JSON'))).toBe(400);
    expect(httpStatusOf(new CursorError('cursor', 'not a cursor this listing returned'))).toBe(400);
    expect(httpStatusOf(new ObjectNotFoundError('results/h/s/report.json'))).toBeUndefined();
    expect(httpStatusOf(new Error('boom'))).toBeUndefined();
  });
});

/** The JSON lines a fresh logger writes while `work` runs (Powertools writes to stdout or console.info). */
async function captureLines(work: (logger: Logger) => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const logger = new Logger({ serviceName: 'test', logLevel: 'INFO' });
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: unknown) => {
    lines.push(String(chunk));
    return true;
  });
  const logSpy = vi.spyOn(console, 'info').mockImplementation((...args: unknown[]) => {
    lines.push(args.map(String).join(' '));
  });
  try {
    await work(logger);
  } finally {
    spy.mockRestore();
    logSpy.mockRestore();
  }
  return lines;
}

describe('correlation keys', () => {
  it('gives one record a logger with its hospital and study; the parent logger never carries them', async () => {
    const lines = await captureLines(async (logger) => {
      await withStudyKeys(logger, { hospital: 'h1', studyId: 's1' }, async (log) => {
        log.info('inside');
      });
      await expect(
        withStudyKeys(logger, { hospital: 'h2' }, async () => {
          throw new Error('fails');
        }),
      ).rejects.toThrow('fails');
      logger.info('after');
    });
    const inside = lines.find((l) => l.includes('inside'));
    const after = lines.find((l) => l.includes('after'));
    expect(inside).toContain('"hospital":"h1"');
    expect(inside).toContain('"study":"s1"');
    expect(after).toBeDefined();
    expect(after).not.toContain('hospital');
    expect(after).not.toContain('study');
  });

  it('keeps the keys of records processed at the same time apart (a batch runs its records in parallel)', async () => {
    const lines = await captureLines(async (logger) => {
      const record = (hospital: string, studyId: string, wait: number) =>
        withStudyKeys(logger, { hospital, studyId }, async (log) => {
          log.info(`start ${hospital}`);
          await new Promise((r) => setTimeout(r, wait));
          log.info(`end ${hospital}`);
        });
      await Promise.all([record('hA', 'sA', 30), record('hB', 'sB', 5)]);
    });
    for (const h of ['hA', 'hB']) {
      const own = lines.filter((l) => l.includes(`start ${h}`) || l.includes(`end ${h}`));
      expect(own).toHaveLength(2);
      for (const line of own) {
        expect(line).toContain(`"hospital":"${h}"`);
        expect(line).toContain(`"study":"s${h.slice(1)}"`);
      }
    }
  });
});

describe('bounded S3 read', () => {
  const stack = useLocalStack();

  it('reads an object within its bound; a missing one is ObjectNotFoundError, a larger one ObjectTooLargeError', async () => {
    const s3 = stack.clients.s3;
    const bucket = stack.resources.bucket;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'contract/ten', Body: Buffer.alloc(10, 7) }));
    expect(Buffer.from(await readObject(s3, bucket, 'contract/ten', 10))).toEqual(Buffer.alloc(10, 7));
    const missing = await readObject(s3, bucket, 'contract/none', 10).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(ObjectNotFoundError);
    expect((missing as Error).message).toBe('contract/none: not found in the bucket');
    const large = await readObject(s3, bucket, 'contract/ten', 9).catch((e: unknown) => e);
    expect(large).toBeInstanceOf(ObjectTooLargeError);
    expect((large as Error).message).toBe('contract/ten: 10 bytes, expected at most 9');
  });
});
