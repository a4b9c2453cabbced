/**
 * The worker's HTTP health check (ECS container health check, load balancer, `covidct dev`):
 * 200 with counts while the model is loaded and the poll loop is alive, 503 otherwise (starting,
 * draining, or a loop that stopped showing life).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the health check reports. */
export interface HealthReport {
  /** 200 or 503. */
  readonly healthy: boolean;
  /** `starting`, `ready`, `draining`, `stalled`. */
  readonly state: string;
  /** Anything else worth showing: model id and hash, backend, processed counts. */
  readonly [key: string]: unknown;
}

/** A running health server. */
export interface HealthServer {
  /** The port it listens on (useful when 0 was asked for). */
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Serve `report()` as JSON on every GET (`/health` by convention) on `host`:`port` (0 = any free
 * port). Loopback by default: the ECS container health check runs inside the container and dials
 * 127.0.0.1, and on a shared machine the report (model, counts) is nobody else's business.
 */
export async function startHealthServer(
  port: number,
  report: () => HealthReport,
  host = '127.0.0.1',
): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    let body: HealthReport;
    try {
      body = report();
    } catch (error) {
      body = { healthy: false, state: 'error', error: (error as Error).message };
    }
    const text = `${JSON.stringify(body)}\n`;
    res.writeHead(body.healthy ? 200 : 503, {
      'content-type': 'application/json',
      'cache-control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : text);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
