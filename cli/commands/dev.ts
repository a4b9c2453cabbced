/**
 * `covidct dev [--port P] [--hospital NAME=KEY]… [--data DIR] [--model REF [--model-dir DIR]]`:
 * the whole pipeline on this machine (local/stack.ts) until Ctrl-C. Thin: options in, the stack's
 * addresses out; the AWS SDK, the servers and the handlers load only when the command runs.
 * Without --model or --model-dir the worker runs the shipped default model, as `npm start` does.
 * For one user on one machine: every server listens on --host (loopback) and none checks signatures.
 */
import { randomBytes } from 'node:crypto';
import { type Command, Option } from 'commander';
import { describeError } from '../../core/errors.js';
import { resolveModelDir } from '../../models/default-model.js';
import { integerOption, OptionValueError, parseVoteThresholdOption, printJson, warn } from '../io.js';

/** Options of `covidct dev`. */
interface DevOptions {
  port: number;
  host: string;
  hospital: string[];
  data?: string;
  model?: string;
  modelDir?: string;
  worker: boolean;
  threshold?: number;
  heatmaps?: string;
  json?: boolean;
}

/** `NAME=KEY`, collected over repeated options. */
function collectHospital(value: string, previous: string[]): string[] {
  const at = value.indexOf('=');
  if (at <= 0 || at === value.length - 1) {
    throw new OptionValueError(`--hospital must be NAME=KEY, got '${value}'`);
  }
  return [...previous, value];
}

/** Register `dev`. */
export function registerDev(program: Command): void {
  program
    .command('dev')
    .description(
      'run the whole pipeline locally (S3/SQS/SNS and DynamoDB servers, the Lambdas, the GPU worker, the API) until Ctrl-C',
    )
    .addOption(integerOption('--port <port>', 'API port', 0, 65535, 3000))
    .option(
      '--host <host>',
      'address every local server listens on (API, S3/SQS/SNS, DynamoDB, worker health); none checks signatures, keep it on loopback',
      '127.0.0.1',
    )
    .addOption(
      new Option('--hospital <name=key>', 'a hospital and its API key (repeatable)')
        .argParser(collectHospital)
        .default([], 'one hospital "demo" with a random key'),
    )
    .option('--data <dir>', 'keep state in this folder so it survives a restart (default: in memory)')
    .option(
      '--model <ref>',
      'the model the worker loads, {name}/{version} under models/ in the bucket (default: the shipped default model, uploaded as default/1)',
    )
    .option('--model-dir <dir>', 'upload this model folder first (as --model, default dev/1)')
    .option('--no-worker', 'do not start the GPU worker (studies stop at CLASSIFYING)')
    .option(
      '--threshold <fraction>',
      'default vote threshold (COVIDCT_VOTE_THRESHOLD)',
      parseVoteThresholdOption('--threshold'),
    )
    .option('--heatmaps <mode>', 'worker Grad-CAM overlays: covid (default) or none')
    .option('--json', 'print the addresses as one JSON object')
    .action(async (options: DevOptions) => {
      const { ID_PATTERN } = await import('../../pipeline/index.js');
      const hospitals = options.hospital.map((pair) => {
        const at = pair.indexOf('=');
        return { hospital: pair.slice(0, at), apiKey: pair.slice(at + 1) };
      });
      for (const { hospital } of hospitals) {
        if (!ID_PATTERN.test(hospital)) {
          throw new OptionValueError(`--hospital: '${hospital}' is not a valid id (letters, digits, . _ -)`);
        }
      }
      if (hospitals.length === 0)
        hospitals.push({ hospital: 'demo', apiKey: randomBytes(16).toString('hex') });
      if (options.heatmaps !== undefined && !['covid', 'none'].includes(options.heatmaps)) {
        throw new OptionValueError(`--heatmaps must be covid or none, got '${options.heatmaps}'`);
      }

      const { LOCAL_RUNTIME_ENV } = await import('../../local/resources.js');
      // The in-process handlers build their Powertools loggers from process.env.
      for (const [name, value] of Object.entries(LOCAL_RUNTIME_ENV)) process.env[name] ??= value;
      const { startLocalStack } = await import('../../local/stack.js');
      // No model named: the worker runs the shipped default one (a one-line error if it is missing).
      const useDefault = options.worker && options.model === undefined && options.modelDir === undefined;
      const modelDir = useDefault ? resolveModelDir(undefined) : options.modelDir;
      const modelRef = options.model ?? (useDefault ? 'default/1' : options.modelDir ? 'dev/1' : undefined);
      const [name, version] = modelRef?.split('/') ?? [];
      if (modelDir && (!name || !version)) {
        throw new OptionValueError(`--model must be {name}/{version}, got '${modelRef}'`);
      }
      const stack = await startLocalStack({
        port: options.port,
        host: options.host,
        hospitals,
        worker: options.worker,
        ...(options.data ? { dataDir: options.data } : {}),
        ...(modelDir && name && version
          ? { uploadModel: { dir: modelDir, name, version } }
          : modelRef
            ? { model: modelRef }
            : {}),
        ...(options.threshold !== undefined ? { voteThreshold: options.threshold } : {}),
        ...(options.heatmaps ? { workerEnv: { COVIDCT_HEATMAPS: options.heatmaps } } : {}),
      });

      const worker = stack.worker();
      // Clients dial a concrete address even when the servers listen on every interface.
      const dialHost = options.host === '0.0.0.0' || options.host === '::' ? '127.0.0.1' : options.host;
      const workerLine = worker.running
        ? `worker       pid ${worker.pid}, model ${stack.model}, health http://${dialHost}:${worker.healthPort}/health`
        : worker.lastExit
          ? `worker       exited at start-up (${worker.lastExit.signal ? `signal ${worker.lastExit.signal}` : `code ${worker.lastExit.code}`}): studies stop at CLASSIFYING`
          : 'worker       not running (--no-worker): studies stop at CLASSIFYING';
      const info = {
        apiUrl: stack.apiUrl,
        hospitals: stack.hospitals,
        endpoints: stack.endpoints,
        bucket: stack.resources.bucket,
        table: stack.resources.tableName,
        queues: stack.resources.queueUrls,
        topicArn: stack.resources.topicArn,
        model: stack.model ?? null,
        worker: worker.running ? { pid: worker.pid, healthPort: worker.healthPort } : null,
        dataDir: options.data ?? null,
      };
      if (options.json) {
        printJson(info);
      } else {
        const lines = [
          `API          ${stack.apiUrl}   (health: ${stack.apiUrl}/health)`,
          ...stack.hospitals.map((h) => `hospital     ${h.hospital}   key ${h.apiKey}`),
          `S3/SQS/SNS   ${stack.endpoints.endpoint}   bucket ${stack.resources.bucket}`,
          `DynamoDB     ${stack.endpoints.dynamoDbEndpoint}   table ${stack.resources.tableName}`,
          workerLine,
          `state        ${options.data ? `${options.data} (kept on a clean stop)` : 'in memory'}`,
          dialHost === options.host
            ? `listening on ${options.host} only: for one user on this machine (the local servers check no signatures)`
            : `listening on every interface (--host ${options.host}): the local servers check no signatures, anyone who reaches these ports can read and forge everything`,
          '',
          `try:  covidct upload STUDY --api ${stack.apiUrl} --key ${stack.hospitals[0]!.apiKey}`,
          'Ctrl-C stops everything.',
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      }

      await new Promise<void>((resolve) => {
        let firstSignalAt: number | undefined;
        const onSignal = (signal: NodeJS.Signals) => {
          if (firstSignalAt !== undefined) {
            // `npx` forwards the Ctrl-C its process group already delivered: the same stop.
            if (Date.now() - firstSignalAt < 2_000) return;
            warn(`${signal} again: exiting without a clean stop`);
            process.exit(1);
          }
          firstSignalAt = Date.now();
          warn(`${signal}: stopping (the worker drains its batch${options.data ? ', state is saved' : ''})`);
          stack.stop().then(resolve, (error: unknown) => {
            warn(`stop failed: ${describeError(error, { className: false })}`);
            resolve();
          });
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
      });
      warn('stopped');
    });
}
