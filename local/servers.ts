/**
 * The local AWS-compatible servers, in-process: fauxqs (S3 + SQS + SNS on one port) and dynalite
 * (DynamoDB). Random free ports by default so test files can each run their own.
 *
 * Persistence with `dataDir`: dynalite keeps DynamoDB in LevelDB under `{dataDir}/dynamodb` (every
 * write lands on disk). fauxqs keeps everything in memory and has no persistence, so a clean
 * `stop()` snapshots its buckets, objects, queues (attributes and messages), topics and
 * subscriptions to `{dataDir}/fauxqs` and the next start restores them (see snapshot.ts). A crash
 * loses the S3/SQS/SNS changes made since the last clean stop.
 */
import { mkdirSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import dynalite from 'dynalite';
import { createClients } from '../pipeline/index.js';
import { type LocalFauxqs, startFauxqsOn } from './fauxqs.js';
import { restoreSnapshot, saveSnapshot } from './snapshot.js';

/** Options of {@link startLocalServers}. */
export interface LocalServersOptions {
  /** Folder for state that survives a restart; in memory only when absent. */
  readonly dataDir?: string;
  /**
   * The address both servers listen on and the endpoints name. Neither checks request signatures:
   * keep it on loopback (one user, one machine). @default '127.0.0.1'
   */
  readonly host?: string;
  /** @default 0 (a free port) */
  readonly s3SqsSnsPort?: number | undefined;
  /** @default 0 (a free port) */
  readonly dynamoPort?: number | undefined;
  /** Events the fauxqs message spy keeps for `waitForMessage` (the S3 router does not depend on it). @default 1000 */
  readonly spyBufferSize?: number;
}

/** Running local servers. */
export interface LocalServers {
  /** S3, SQS and SNS endpoint (`http://host:port`). */
  readonly endpoint: string;
  readonly dynamoDbEndpoint: string;
  /** The fauxqs server: its message spy (`fauxqs.spy`) and queue inspection (`fauxqs.inspectQueue`). */
  readonly fauxqs: LocalFauxqs;
  readonly dataDir?: string;
  /** Snapshot fauxqs's state (with `dataDir`) and stop both servers; safe to call twice. */
  stop(): Promise<void>;
}

/** Start fauxqs and dynalite; with `dataDir`, restore the state a previous clean stop left there. */
export async function startLocalServers(options: LocalServersOptions = {}): Promise<LocalServers> {
  const host = options.host ?? '127.0.0.1';
  // Clients must dial a concrete address even when the servers listen on every interface.
  const dialHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const dataDir = options.dataDir;
  if (dataDir) mkdirSync(dataDir, { recursive: true });

  const dynamo = dynalite({
    createTableMs: 0,
    deleteTableMs: 0,
    updateTableMs: 0,
    ...(dataDir ? { path: join(dataDir, 'dynamodb') } : {}),
  });
  await listen(dynamo, options.dynamoPort ?? 0, host);
  const dynamoPort = (dynamo.address() as AddressInfo).port;

  let fauxqs: LocalFauxqs;
  try {
    fauxqs = await startFauxqsOn({
      host,
      port: options.s3SqsSnsPort ?? 0,
      spyBufferSize: options.spyBufferSize ?? 1000,
    });
  } catch (error) {
    await close(dynamo);
    throw error;
  }
  const endpoint = `http://${dialHost}:${fauxqs.port}`;
  const dynamoDbEndpoint = `http://${dialHost}:${dynamoPort}`;
  const fauxqsDir = dataDir ? join(dataDir, 'fauxqs') : undefined;
  const clients = fauxqsDir ? createClients({ endpoint, dynamoDbEndpoint }) : undefined;
  if (fauxqsDir && clients) {
    try {
      await restoreSnapshot(clients, fauxqs, fauxqsDir);
    } catch (error) {
      await Promise.allSettled([fauxqs.stop(), close(dynamo)]);
      throw error;
    }
  }

  let stopping: Promise<void> | undefined;
  return {
    endpoint,
    dynamoDbEndpoint,
    fauxqs,
    ...(dataDir ? { dataDir } : {}),
    stop() {
      stopping ??= (async () => {
        try {
          if (fauxqsDir && clients) await saveSnapshot(clients, fauxqs, fauxqsDir);
        } finally {
          clients?.s3.destroy();
          clients?.sqs.destroy();
          clients?.sns.destroy();
          clients?.dynamo.destroy();
          await Promise.all([fauxqs.stop(), close(dynamo)]);
        }
      })();
      return stopping;
    },
  };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    // Idle keep-alive sockets of SDK clients would hold close() open.
    server.closeAllConnections?.();
    server.close((error) => (error ? reject(error) : resolve()));
  });
}
