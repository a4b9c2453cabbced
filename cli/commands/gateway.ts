/**
 * `covidct gateway --port P --ae-title AE --api URL --destination AE@HOST:PORT --allow-caller AE[@HOST] …
 * [--quiet-seconds N] [--state DIR] [--retain-days N] [--refuse-other-sop-classes] [--key-file FILE]`:
 * the DICOM gateway on the hospital's side (../../gateway/gateway.ts). The API key comes from
 * `COVIDCT_API_KEY` or `--key-file`, never the command line, where every user of the machine can
 * read it. Runs until SIGINT or SIGTERM.
 */
import { readFile, stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { boundedIntExpected, parseBoundedInt } from '../../core/bounded-int.js';
import { fileSystemError, InputError } from '../../core/errors.js';

/** The options `gateway` takes. */
export interface GatewayCliOptions {
  readonly port: string;
  readonly aeTitle: string;
  readonly api: string;
  readonly destination: string;
  readonly allowCaller: string[];
  readonly quietSeconds: string;
  readonly state: string;
  readonly retainDays: string;
  readonly refuseOtherSopClasses?: boolean;
  readonly keyFile?: string;
}

function wholeNumber(option: string, text: string, min: number, max: number): number {
  const n = parseBoundedInt(text, min, max);
  if (n === undefined) throw new InputError(option, `'${text}' is not ${boundedIntExpected(min, max)}`);
  return n;
}

/** The hospital's API key: `--key-file` (owner-only) or `COVIDCT_API_KEY`. */
export async function readApiKey(keyFile: string | undefined, env = process.env): Promise<string> {
  if (keyFile !== undefined) {
    let text: string;
    try {
      const s = await stat(keyFile);
      if ((s.mode & 0o077) !== 0) {
        const mode = (s.mode & 0o777).toString(8).padStart(4, '0');
        throw new InputError(
          keyFile,
          `is readable or writable by other users (mode ${mode}); chmod 600 it (it holds the API key)`,
        );
      }
      text = await readFile(keyFile, 'utf8');
    } catch (error) {
      if (error instanceof InputError) throw error;
      throw fileSystemError(keyFile, error);
    }
    const key = text.trim();
    if (key === '') throw new InputError(keyFile, 'is empty, expected the API key');
    return key;
  }
  const key = env.COVIDCT_API_KEY?.trim();
  if (!key) throw new InputError('COVIDCT_API_KEY', 'is not set; set it or give --key-file FILE');
  return key;
}

/** Register `gateway`. */
export function registerGateway(program: Command): void {
  program
    .command('gateway')
    .description(
      'DICOM gateway: receive CT studies (C-STORE), send them de-identified for analysis, return an SR and overlays to the destination PACS',
    )
    .requiredOption('--port <port>', 'DICOM port to listen on')
    .requiredOption('--ae-title <ae>', "the gateway's AE title")
    .requiredOption('--api <url>', 'the API base URL (`covidct dev` prints it)')
    .requiredOption(
      '--destination <ae@host:port>',
      'where results go (C-STORE), usually the PACS that sent the study',
    )
    .requiredOption(
      '--allow-caller <ae[@host]>',
      'a calling AE title (and host) allowed to send; repeat for more',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option('--quiet-seconds <n>', 'a study is complete after this long without a new instance', '30')
    .option(
      '--state <dir>',
      'received data, runs and undelivered results (mode 0700)',
      'covidct-gateway-state',
    )
    .option('--retain-days <n>', 'purge received data and finished runs after this many days', '7')
    .option(
      '--refuse-other-sop-classes',
      'refuse non-CT storage SOP classes at association (default: accept and discard)',
    )
    .option(
      '--key-file <file>',
      "a file (mode 0600) holding the hospital's API key; default: $COVIDCT_API_KEY",
    )
    .action(async (options: GatewayCliOptions) => {
      const [{ startGateway }, { parseAllowedCaller, parseDestination, checkAeTitle }, { gatewayLogger }] =
        await Promise.all([
          import('../../gateway/gateway.js'),
          import('../../gateway/dimse.js'),
          import('../../gateway/log.js'),
        ]);
      const key = await readApiKey(options.keyFile);
      const gateway = await startGateway({
        port: wholeNumber('--port', options.port, 0, 65535),
        aeTitle: checkAeTitle('--ae-title', options.aeTitle),
        allow: options.allowCaller.map(parseAllowedCaller),
        destination: parseDestination(options.destination),
        api: { api: options.api, key },
        stateDir: options.state,
        quietSeconds: wholeNumber('--quiet-seconds', options.quietSeconds, 1, 86_400),
        retainDays: wholeNumber('--retain-days', options.retainDays, 1, 3650),
        refuseOtherSopClasses: options.refuseOtherSopClasses ?? false,
        log: gatewayLogger(),
      });
      await new Promise<void>((resolve) => {
        const onSignal = () => {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          void gateway.stop().then(resolve);
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
      });
    });
}
