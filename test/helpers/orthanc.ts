/**
 * Debian's Orthanc (`/usr/sbin/Orthanc`) as a plain process for tests: HTTP on a free loopback
 * port, no authentication but no remote access, storage in a temp folder. No DICOM listener unless
 * asked for one (then with its AE title and the modalities it may send to). Stopped by its PID.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../../local/ports.js';

export { freePort };

/** Where Debian's package puts the server. */
export const ORTHANC = '/usr/sbin/Orthanc';

/** A running Orthanc. */
export interface OrthancServer {
  readonly url: string;
  /** Its DICOM port (listening only with {@link OrthancOptions.dicom}). */
  readonly dicomPort: number;
  readonly log: string[];
  /** Store one DICOM file; resolves with Orthanc's instance id. */
  upload(bytes: Uint8Array): Promise<string>;
  /** `POST /instances/{id}/anonymize` with `body`; resolves with the anonymized file. */
  anonymize(id: string, body: Record<string, unknown>): Promise<Uint8Array>;
  stop(): Promise<void>;
}

/** Orthanc as a DICOM node: its AE title and the peers it knows (`DicomModalities`). */
export interface OrthancDicomOptions {
  /** Orthanc's own AE title (`DicomAet`). */
  readonly aet: string;
  /** Modalities by id: where `POST /modalities/{id}/store` sends, and who may store to Orthanc. */
  readonly modalities: Readonly<Record<string, { aet: string; host: string; port: number }>>;
}

/** Options of {@link startOrthanc}. */
export interface OrthancOptions {
  /** Enable the DICOM server on a free loopback port. */
  readonly dicom?: OrthancDicomOptions;
}

/** Start Orthanc with its storage under `dir`; resolves once `/system` answers. */
export async function startOrthanc(dir: string, options: OrthancOptions = {}): Promise<OrthancServer> {
  const storage = join(dir, 'storage');
  mkdirSync(storage, { recursive: true });
  const [httpPort, dicomPort] = [await freePort(), await freePort()];
  const config = join(dir, 'orthanc.json');
  writeFileSync(
    config,
    JSON.stringify({
      Name: 'covidct-test',
      StorageDirectory: storage,
      IndexDirectory: storage,
      HttpPort: httpPort,
      DicomPort: dicomPort,
      DicomServerEnabled: options.dicom !== undefined,
      ...(options.dicom
        ? {
            // Debian's Orthanc 1.10 has no DicomListenAddress: the DICOM port is on every
            // interface while the test runs; only the modalities below may store to it.
            DicomAet: options.dicom.aet,
            DicomModalities: Object.fromEntries(
              Object.entries(options.dicom.modalities).map(([id, m]) => [
                id,
                { AET: m.aet, Host: m.host, Port: m.port },
              ]),
            ),
            // Only the modalities above may store (the gateway sends its results back).
            DicomAlwaysAllowStore: false,
            DicomCheckModalityHost: true,
          }
        : {}),
      RemoteAccessAllowed: false,
      AuthenticationEnabled: false,
      Plugins: [],
      StorageCompression: false,
    }),
  );
  const log: string[] = [];
  const child: ChildProcess = spawn(ORTHANC, [config], { stdio: ['ignore', 'pipe', 'pipe'] });
  const collect = (chunk: Buffer) => log.push(...chunk.toString('utf8').split('\n').filter(Boolean));
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let exited: number | null | undefined;
  child.once('exit', (code) => {
    exited = code;
  });
  const url = `http://127.0.0.1:${httpPort}`;
  const server: OrthancServer = {
    url,
    dicomPort,
    log,
    async upload(bytes) {
      const res = await fetch(`${url}/instances`, { method: 'POST', body: bytes });
      const body = (await res.json()) as { ID?: string; Status?: string };
      if (!res.ok || typeof body.ID !== 'string') {
        throw new Error(`Orthanc refused an instance: ${res.status} ${JSON.stringify(body)}`);
      }
      return body.ID;
    },
    async anonymize(id, body) {
      const res = await fetch(`${url}/instances/${id}/anonymize`, {
        method: 'POST',
        body: JSON.stringify(body),
      });
      if (!res.ok) throw new Error(`Orthanc anonymize ${id}: ${res.status} ${await res.text()}`);
      return new Uint8Array(await res.arrayBuffer());
    },
    async stop() {
      if (exited !== undefined || child.pid === undefined) return;
      const done = new Promise((r) => child.once('exit', r));
      process.kill(child.pid, 'SIGTERM');
      const timer = setTimeout(() => child.pid !== undefined && process.kill(child.pid, 'SIGKILL'), 5000);
      await done;
      clearTimeout(timer);
    },
  };
  for (let i = 0; i < 150; i++) {
    if (exited !== undefined) throw new Error(`Orthanc exited (${exited}): ${log.slice(-5).join(' | ')}`);
    try {
      if ((await fetch(`${url}/system`)).ok) return server;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await server.stop();
  throw new Error(`Orthanc did not answer on ${url} within 15 s: ${log.slice(-5).join(' | ')}`);
}
