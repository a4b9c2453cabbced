/**
 * Building blocks the constructs share: a queue with its dead-letter queue made from a shared
 * {@link QueueDefinition}, the pipeline's DynamoDB tables, and a pipeline Lambda (bundled from its TypeScript entry by esbuild,
 * or given prebuilt code so assertion tests need not bundle).
 */
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { QueueDefinition } from '../pipeline/index.js';
import { METRICS_NAMESPACE } from '../pipeline/index.js';

/** The repository root (entries, lock file and the worker's Docker context are found from it). */
export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The pipeline's Lambda functions, by their folder under `lambdas/`. */
export type PipelineFunctionName = 'select' | 'aggregate' | 'api' | 'sweeper' | 'authorizer';

/**
 * Prebuilt code for a function instead of bundling `lambdas/{name}/handler.ts` (assertion tests
 * pass `lambda.Code.fromInline(...)`: bundling three functions takes ~10 s per synth).
 */
export type FunctionCodeProvider = (name: PipelineFunctionName) => lambda.Code;

/**
 * WebAssembly codecs the DICOM decoders load from the bundle's directory at run time (esbuild
 * bundles their JavaScript but not the `.wasm` files they read by name next to the script).
 */
export const BUNDLED_WASM = [
  'node_modules/@cornerstonejs/codec-charls/dist/charlswasm_decode.wasm',
  'node_modules/@cornerstonejs/codec-openjpeg/dist/openjpegwasm_decode.wasm',
  'node_modules/dcmjs-codecs/build/dcmjs-native-codecs.wasm',
] as const;

/**
 * ESM bundles have no `require`, `__filename` or `__dirname`; the bundled CommonJS dependencies
 * (the codecs' Emscripten loaders, dcmjs-codecs) use them to find their `.wasm` files.
 */
const ESM_BANNER =
  "import { createRequire as __covidctCreateRequire } from 'node:module';" +
  "import { fileURLToPath as __covidctFileURLToPath } from 'node:url';" +
  "import { dirname as __covidctDirname } from 'node:path';" +
  'const require = __covidctCreateRequire(import.meta.url);' +
  'const __filename = __covidctFileURLToPath(import.meta.url);' +
  'const __dirname = __covidctDirname(__filename);';

/**
 * What every function of a construct takes from the construct's own props (their `key`,
 * `logRetention`, `reservedConcurrency` and `code` fit as they are).
 */
export interface FunctionSettings {
  /** Encrypts the function's log group and environment. */
  readonly key: kms.IKey;
  /** How long the function's log group keeps logs. */
  readonly logRetention: logs.RetentionDays;
  /** @default - none reserved */
  readonly reservedConcurrency?: number;
  /** Prebuilt code. @default - bundle the TypeScript entry with esbuild */
  readonly code?: FunctionCodeProvider;
}

/** Props of {@link PipelineFunction}. */
export interface PipelineFunctionProps {
  /** Which handler: `lambdas/{name}/handler.ts`; its Powertools service name is `covidct-{name}`. */
  readonly name: PipelineFunctionName;
  /** The construct's key, log retention, reserved concurrency and code. */
  readonly settings: FunctionSettings;
  /** MB; also sets the CPU share (1769 MB = one vCPU). */
  readonly memorySize: number;
  /** The consumer's timeout from the queue definition (API: API Gateway's 29 s). */
  readonly timeout: Duration;
  /** Overrides the settings' reserved concurrency (the sweeper's one at a time). */
  readonly reservedConcurrentExecutions?: number;
  /** The `COVIDCT_*` variables (names from pipeline/config.ts ENV). */
  readonly environment: Record<string, string>;
}

/**
 * One pipeline Lambda: Node.js 22 on arm64 (pure JavaScript and WebAssembly, no native modules),
 * X-Ray active tracing, JSON logs into its own encrypted log group with retention.
 */
export class PipelineFunction extends Construct {
  readonly function: lambda.Function;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: PipelineFunctionProps) {
    super(scope, id);
    const { key, logRetention, code } = props.settings;
    const reserved = props.reservedConcurrentExecutions ?? props.settings.reservedConcurrency;
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: logRetention,
      encryptionKey: key,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const common = {
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memorySize,
      timeout: props.timeout,
      tracing: lambda.Tracing.ACTIVE,
      logGroup: this.logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      environmentEncryption: key,
      environment: {
        ...props.environment,
        POWERTOOLS_SERVICE_NAME: `covidct-${props.name}`,
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        NODE_OPTIONS: '--enable-source-maps',
      },
      ...(reserved === undefined ? {} : { reservedConcurrentExecutions: reserved }),
    };
    if (code) {
      this.function = new lambda.Function(this, 'Function', {
        ...common,
        code: code(props.name),
        handler: 'index.handler',
      });
      return;
    }
    this.function = new NodejsFunction(this, 'Function', {
      ...common,
      entry: `${REPO_ROOT}lambdas/${props.name}/handler.ts`,
      handler: 'handler',
      projectRoot: REPO_ROOT,
      depsLockFilePath: `${REPO_ROOT}package-lock.json`,
      bundling: {
        format: OutputFormat.ESM,
        target: 'node22',
        mainFields: ['module', 'main'],
        minify: true,
        sourceMap: true,
        sourcesContent: false,
        // The SDK is bundled, not taken from the runtime: the code is tested with the pinned
        // 3.1169.0 (presigning without flexible checksums depends on that version), while the
        // runtime's copy is older and changes without notice.
        externalModules: [],
        banner: ESM_BANNER,
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          afterBundling: (inputDir: string, outputDir: string) =>
            props.name === 'select'
              ? BUNDLED_WASM.map((file) => `cp "${inputDir}/${file}" "${outputDir}/"`)
              : [],
        },
      },
    });
  }
}

/** Props of {@link PipelineQueue}. */
export interface PipelineQueueProps {
  /** The shared definition (pipeline/resources.ts QUEUES). */
  readonly definition: QueueDefinition;
  readonly key: kms.IKey;
}

/** A queue and its dead-letter queue, as {@link QueueDefinition} describes (and `covidct dev` creates). */
export class PipelineQueue extends Construct {
  readonly queue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;
  readonly definition: QueueDefinition;

  constructor(scope: Construct, id: string, props: PipelineQueueProps) {
    super(scope, id);
    const d = props.definition;
    this.definition = d;
    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      retentionPeriod: Duration.seconds(d.deadLetterRetentionSeconds),
      encryption: sqs.QueueEncryption.KMS,
      encryptionMasterKey: props.key,
      enforceSSL: true,
    });
    this.queue = new sqs.Queue(this, 'Queue', {
      visibilityTimeout: Duration.seconds(d.visibilityTimeoutSeconds),
      retentionPeriod: Duration.seconds(d.retentionSeconds),
      encryption: sqs.QueueEncryption.KMS,
      encryptionMasterKey: props.key,
      enforceSSL: true,
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: d.maxReceiveCount },
    });
  }
}

/** Key attribute names of a pipeline table (string partition and sort keys). */
export interface PipelineTableKeys {
  readonly partitionKey: string;
  readonly sortKey: string;
}

/**
 * A pipeline DynamoDB table: on-demand, point-in-time recovery, encrypted with the stack's key,
 * protected from deletion (the study table and the API-key table hold the same promises).
 */
export function pipelineTable(
  scope: Construct,
  id: string,
  keys: PipelineTableKeys,
  props: { readonly key: kms.IKey; readonly removalPolicy?: RemovalPolicy | undefined },
): dynamodb.Table {
  return new dynamodb.Table(scope, id, {
    partitionKey: { name: keys.partitionKey, type: dynamodb.AttributeType.STRING },
    sortKey: { name: keys.sortKey, type: dynamodb.AttributeType.STRING },
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
    encryptionKey: props.key,
    deletionProtection: true,
    removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
  });
}
