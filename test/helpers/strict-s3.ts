/**
 * A stand-in for what AWS S3 checks on a presigned PUT, for tests: fauxqs 1.9.2 (the local S3)
 * verifies neither SigV4 signatures nor `x-amz-checksum-*` headers, so whether a presigned URL binds
 * the bytes cannot be seen against it. This server does what S3 documents for a query-signed PUT:
 * recompute the SigV4 signature over the method, path, query and the signed headers as received
 * (403 SignatureDoesNotMatch, 403 on expiry), then compare the body with a sent
 * `x-amz-checksum-sha256` (400 BadDigest). It stores accepted bodies in memory.
 *
 * Written from the SigV4 specification (AWS General Reference, "Create a signed AWS API request"),
 * independently of the SDK's signer it checks.
 */
import { createHash, createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the server answered. */
export interface StrictPut {
  readonly path: string;
  readonly status: number;
  readonly code: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** A running stand-in. */
export interface StrictS3 {
  /** `http://127.0.0.1:PORT`: the endpoint to presign against (path-style). */
  readonly endpoint: string;
  /** Accepted bodies by path (`/bucket/key`, as sent). */
  readonly objects: Map<string, Uint8Array>;
  /** Every PUT, in order. */
  readonly puts: StrictPut[];
  stop(): Promise<void>;
}

/** RFC 3986 encoding, as SigV4 asks for query names and values. */
function encode(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();
const sha256Hex = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex');

/**
 * Why a query-signed request fails verification, or undefined when it verifies. `headers` are the
 * request's headers with lower-case names, as received.
 */
export function verifyPresigned(
  method: string,
  rawUrl: string,
  headers: Readonly<Record<string, string | string[] | undefined>>,
  secretAccessKey: string,
  now: Date = new Date(),
): string | undefined {
  const url = new URL(rawUrl, 'http://placeholder');
  const q = url.searchParams;
  if (q.get('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') return 'AuthorizationQueryParametersError';
  const credential = q.get('X-Amz-Credential') ?? '';
  const date = q.get('X-Amz-Date') ?? '';
  const signedHeaders = (q.get('X-Amz-SignedHeaders') ?? '').split(';');
  const signature = q.get('X-Amz-Signature') ?? '';
  const [, scopeDate, region, service, terminal] = credential.split('/');
  if (!scopeDate || !region || !service || terminal !== 'aws4_request')
    return 'AuthorizationQueryParametersError';
  const signedAt = Date.parse(
    `${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}T${date.slice(9, 11)}:${date.slice(11, 13)}:${date.slice(13, 15)}Z`,
  );
  if (!(now.getTime() <= signedAt + Number(q.get('X-Amz-Expires')) * 1000)) return 'AccessDenied (expired)';
  const query = [...q.entries()]
    .filter(([name]) => name !== 'X-Amz-Signature')
    .map(([name, value]) => [encode(name), encode(value)] as const)
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
  const canonicalHeaders = signedHeaders
    .map((name) => {
      const value = headers[name];
      const text = Array.isArray(value) ? value.join(',') : (value ?? '');
      return `${name}:${text.trim().replace(/\s+/g, ' ')}\n`;
    })
    .join('');
  const canonical = [
    method,
    url.pathname, // S3 signs the path as sent (the SDK encodes it once, and S3 does not re-encode)
    query,
    canonicalHeaders,
    signedHeaders.join(';'),
    'UNSIGNED-PAYLOAD',
  ].join('\n');
  const scope = `${scopeDate}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', date, scope, sha256Hex(canonical)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secretAccessKey}`, scopeDate), region), service), 'aws4_request');
  const expected = createHmac('sha256', key).update(toSign, 'utf8').digest('hex');
  return expected === signature ? undefined : 'SignatureDoesNotMatch';
}

async function readBody(req: IncomingMessage): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Start the stand-in on a free loopback port; it accepts query-signed PUTs only. */
export async function startStrictS3(secretAccessKey: string): Promise<StrictS3> {
  const objects = new Map<string, Uint8Array>();
  const puts: StrictPut[] = [];
  const server: Server = createServer((req, res) => {
    void (async () => {
      const body = await readBody(req);
      const path = (req.url ?? '').split('?')[0] ?? '';
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(req.headers)) {
        if (typeof value === 'string') headers[name] = value;
      }
      let status = 200;
      let code = 'OK';
      const refused =
        req.method === 'PUT'
          ? verifyPresigned('PUT', req.url ?? '', req.headers, secretAccessKey)
          : 'MethodNotAllowed';
      if (refused) {
        status = 403;
        code = refused;
      } else if (Number(headers['content-length']) !== body.length) {
        status = 400;
        code = 'IncompleteBody';
      } else if (
        headers['x-amz-checksum-sha256'] !== undefined &&
        headers['x-amz-checksum-sha256'] !== createHash('sha256').update(body).digest('base64')
      ) {
        status = 400;
        code = 'BadDigest';
      } else {
        objects.set(path, body);
      }
      puts.push({ path, status, code, headers });
      res.writeHead(status, { 'content-type': 'application/xml' });
      res.end(`<Error><Code>${code}</Code></Error>`);
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    objects,
    puts,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
