/**
 * fauxqs (S3 + SQS + SNS on one port) listening on the address it is given. fauxqs 1.9.2's
 * `startFauxqs` always listens on 0.0.0.0 (its `host` option only changes the queue URLs it
 * prints) and checks no signatures, so from any machine that reaches the port one could read every
 * slice and forge votes. This builds the same server from fauxqs's exported `buildApp` and the
 * stores and message spy `startFauxqs` would make, and listens on `host` only.
 *
 * The stores are not exported by the package: they are loaded from beside its entry point. fauxqs is
 * pinned (2.x needs Node 22), and test/local-privacy.test.ts fails if a version moves them.
 */
import type { AddressInfo } from 'node:net';
import { type BuildAppOptions, buildApp, type FauxqsServer } from 'fauxqs';

/** What the local stack uses of a fauxqs server: its port, message spy and queue inspection. */
export type LocalFauxqs = Pick<FauxqsServer, 'port' | 'spy' | 'inspectQueue' | 'stop'>;

/** Options of {@link startFauxqsOn}. */
export interface FauxqsOnOptions {
  /** The address to listen on (`127.0.0.1` for one user on one machine). */
  readonly host: string;
  /** 0 for a free port. */
  readonly port: number;
  /** Events the message spy keeps. */
  readonly spyBufferSize: number;
}

type Stores = NonNullable<BuildAppOptions['stores']>;
type MessageSpy = NonNullable<Stores['sqsStore']['spy']>;

/** A module of the fauxqs package by its path inside dist/ (beside app.js, the entry point). */
async function fauxqsModule<T>(path: string): Promise<T> {
  return (await import(new URL(path, import.meta.resolve('fauxqs')).href)) as T;
}

/** Start fauxqs on `host`:`port`, with a message spy, without request logging. */
export async function startFauxqsOn(options: FauxqsOnOptions): Promise<LocalFauxqs> {
  const [{ SqsStore }, { SnsStore }, { S3Store }, { MessageSpy }] = await Promise.all([
    fauxqsModule<{ SqsStore: new () => Stores['sqsStore'] }>('./sqs/sqsStore.js'),
    fauxqsModule<{ SnsStore: new () => Stores['snsStore'] }>('./sns/snsStore.js'),
    fauxqsModule<{ S3Store: new () => Stores['s3Store'] }>('./s3/s3Store.js'),
    fauxqsModule<{ MessageSpy: new (params: { bufferSize: number }) => MessageSpy }>('./spy.js'),
  ]);
  const spy = new MessageSpy({ bufferSize: options.spyBufferSize });
  const stores: Stores = { sqsStore: new SqsStore(), snsStore: new SnsStore(), s3Store: new S3Store() };
  stores.sqsStore.spy = spy;
  stores.snsStore.spy = spy;
  stores.s3Store.spy = spy;
  const app = buildApp({ logger: false, stores });
  await app.listen({ port: options.port, host: options.host });
  const port = (app.server.address() as AddressInfo).port;
  return {
    port,
    spy,
    inspectQueue: (name) => stores.sqsStore.inspectQueue(name),
    stop: () => app.close(),
  };
}
