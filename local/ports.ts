/** Free TCP ports, for servers whose port must be known before they start (a worker's health check, test and bench peers). */
import { createServer } from 'node:net';

/** A TCP port free on `host` now (the OS picks it; another process could take it before use). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}
