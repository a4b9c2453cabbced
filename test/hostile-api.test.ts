/**
 * Hostile API calls against the local stack (issue 7, item 2): wrong or missing API keys, oversized
 * bodies, 10,000 slices, slices over the size cap, traversal and odd names, odd study ids. Every
 * case must end in a clear rejection: a one-line message naming the field.
 */
import { describe, expect, it } from 'vitest';
import { PIPELINE_DEFAULTS } from '../pipeline/index.js';
import { A, api, B, expectRejection, record, useHostileStack } from './helpers/hostile.js';

useHostileStack();

describe('API keys', () => {
  it('refuses a missing, empty or unknown key with 401/403 and the same one-line message for any route', async () => {
    for (const path of ['/studies', '/studies/x', '/studies/x/report']) {
      expectRejection(await api(path, { key: null }), 401, /^x-api-key header missing$/);
      expectRejection(await api(path, { key: '' }), 401, /^x-api-key header missing$/);
      expectRejection(await api(path, { key: 'not-a-key' }), 403, /^API key not recognised$/);
      expectRejection(await api(path, { key: `${A.apiKey}x` }), 403, /^API key not recognised$/);
      expectRejection(await api(path, { key: B.apiKey.slice(0, -1) }), 403, /^API key not recognised$/);
      expectRejection(await api(path, { key: 'é'.repeat(100) }), 403, /^API key not recognised$/);
    }
    const post = await api('/studies', { key: 'not-a-key', body: '{}' });
    expectRejection(post, 403, /^API key not recognised$/);
    record(
      'missing / empty / unknown / extended / truncated / non-ASCII API key, every route',
      '401 or 403, one line',
    );
  });
});

describe('POST /studies bodies', () => {
  it('refuses a body over the 1 MiB request bound (413) and over API Gateway’s 10 MiB (413)', async () => {
    const big = JSON.stringify({ series: [{ id: 'S1', slices: [] }], pad: 'x'.repeat(1024 * 1024) });
    expectRejection(await api('/studies', { body: big }), 413, /^body: larger than 1048576 bytes$/);
    const huge = 'x'.repeat(11 * 1024 * 1024);
    const res = await api('/studies', { body: huge });
    expect(res.status).toBe(413);
    record('POST /studies body of 1 MiB + padding', '413 "body: larger than 1048576 bytes"');
    record('POST /studies body of 11 MiB', '413 from the API Gateway emulation (10 MiB limit)');
  });

  it('refuses 10,000 slices, a slice over the size cap, traversal and odd names, each naming the field', async () => {
    const slice = (name: string, size = 100) => ({ name, sha256: 'a'.repeat(64), size });
    const tenThousand = {
      series: Array.from({ length: 5 }, (_, s) => ({
        id: `S${s}`,
        slices: Array.from({ length: 2000 }, (_, i) => slice(`${i}.dcm`)),
      })),
    };
    // 10,000 slices do not fit in the 1 MiB body; 2,250 do, and break the per-study bound.
    const tenThousandRes = await api('/studies', { body: JSON.stringify(tenThousand) });
    expectRejection(tenThousandRes, 413, /^body: larger than 1048576 bytes$/);
    record('POST /studies: 10,000 slices', `413 "${tenThousandRes.body.message}"`);
    const spread = {
      series: Array.from({ length: 5 }, (_, s) => ({
        id: `S${s}`,
        slices: Array.from({ length: 450 }, (_, i) => slice(`${i}.dcm`)),
      })),
    };
    const cases: [string, unknown, RegExp][] = [
      ['2,250 slices in 5 series', spread, /^body\.series: 2250 slices in all, expected at most 2000$/],
      [
        '2,001 slices in one series',
        { series: [{ id: 'S1', slices: Array.from({ length: 2001 }, (_, i) => slice(`${i}.dcm`)) }] },
        /^body\.series\[0\]\.slices: expected at most 2000 slices$/,
      ],
      [
        'a slice over the size cap',
        { series: [{ id: 'S1', slices: [slice('a.dcm', PIPELINE_DEFAULTS.maxSliceBytes + 1)] }] },
        /^body\.series\[0\]\.slices\[0\]\.size: expected at most 4194304 bytes$/,
      ],
      [
        'name ..',
        { series: [{ id: 'S1', slices: [slice('..')] }] },
        /^body\.series\[0\]\.slices\[0\]\.name: /,
      ],
      [
        'name ../../x',
        { series: [{ id: 'S1', slices: [slice('../../x')] }] },
        /^body\.series\[0\]\.slices\[0\]\.name: /,
      ],
      [
        'name %2e%2e',
        { series: [{ id: 'S1', slices: [slice('%2e%2e')] }] },
        /^body\.series\[0\]\.slices\[0\]\.name: /,
      ],
      [
        'name a/b',
        { series: [{ id: 'S1', slices: [slice('a/b.dcm')] }] },
        /^body\.series\[0\]\.slices\[0\]\.name: /,
      ],
      [
        'name é.dcm',
        { series: [{ id: 'S1', slices: [slice('é.dcm')] }] },
        /^body\.series\[0\]\.slices\[0\]\.name: /,
      ],
      [
        'name with a line break',
        { series: [{ id: 'S1', slices: [slice('a\nb')] }] },
        /^body\.series\[0\]\.slices\[0\]\.name: /,
      ],
      [
        'series id ../hospital-b',
        { series: [{ id: '../hospital-b', slices: [slice('a')] }] },
        /^body\.series\[0\]\.id: /,
      ],
      [
        'duplicate names',
        { series: [{ id: 'S1', slices: [slice('a'), slice('a')] }] },
        /^body\.series\[0\]\.slices\[1\]\.name: duplicate/,
      ],
      [
        'an unknown field',
        { series: [{ id: 'S1', slices: [slice('a')] }], hospital: 'hospital-b' },
        /^body\.hospital: unknown field$/,
      ],
    ];
    for (const [what, body, field] of cases) {
      const res = await api('/studies', { body: JSON.stringify(body) });
      expectRejection(res, 400, field);
      record(`POST /studies: ${what}`, `400 "${res.body.message}"`);
    }
    // Bytes that are not UTF-8: decoded with replacement characters, then not JSON.
    const res = await api('/studies', { body: Uint8Array.from([0x7b, 0xff, 0xfe, 0x22, 0x7d]) });
    expectRejection(res, 400, /^body: is not JSON/);
    record('POST /studies: non-UTF-8 bytes', `400 "${res.body.message}"`);
  });

  it('answers a study id with traversal or odd characters like a missing study', async () => {
    for (const id of ['..%2F..%2Fhospital-b', '%2e%2e', 'x%00y', '%E9', 'a'.repeat(200), '%ZZ']) {
      for (const path of [`/studies/${id}`, `/studies/${id}/report`]) {
        const res = await api(path);
        expect([404, 403], `${path}: ${JSON.stringify(res.body)}`).toContain(res.status);
        if (res.status === 404 && res.body.message !== undefined)
          expect(res.body.message).not.toMatch(/[\r\n]/);
      }
    }
    record('GET /studies/{id}[/report] with ../, %00, %E9, %ZZ, 200 characters', '404 like a missing study');
  });
});
