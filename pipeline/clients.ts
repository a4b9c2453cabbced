/**
 * AWS SDK v3 clients, created once per process and injectable. On AWS they use the default
 * credential chain and region; on the local stack `COVIDCT_ENDPOINT` / `COVIDCT_DYNAMODB_ENDPOINT`
 * point them at the local servers, with the options those servers need.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SNSClient } from '@aws-sdk/client-sns';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { ENV } from './config.js';

/** The clients the pipeline uses. */
export interface AwsClients {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly sns: SNSClient;
  readonly dynamo: DynamoDBDocumentClient;
}

/** Where the clients connect: nothing on AWS; the local servers' URLs on the local stack. */
export interface ClientEndpoints {
  /** S3, SQS and SNS (one local server serves all three). */
  readonly endpoint?: string | undefined;
  readonly dynamoDbEndpoint?: string | undefined;
  /** @default process.env.AWS_REGION ?? 'us-east-1' */
  readonly region?: string;
}

/** Endpoints from the environment (`COVIDCT_ENDPOINT`, `COVIDCT_DYNAMODB_ENDPOINT`). */
export function endpointsFromEnv(env: NodeJS.ProcessEnv = process.env): ClientEndpoints {
  return {
    ...(env[ENV.endpointS3SqsSns] ? { endpoint: env[ENV.endpointS3SqsSns] } : {}),
    ...(env[ENV.endpointDynamoDb] ? { dynamoDbEndpoint: env[ENV.endpointDynamoDb] } : {}),
  };
}

/** Local servers accept any credentials; real ones come from the default chain. */
const LOCAL_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };

/** Create the clients for the given endpoints. */
export function createClients(endpoints: ClientEndpoints = endpointsFromEnv()): AwsClients {
  const region = endpoints.region ?? process.env.AWS_REGION ?? 'us-east-1';
  const local = endpoints.endpoint ? { endpoint: endpoints.endpoint, credentials: LOCAL_CREDENTIALS } : {};
  const localDynamo = endpoints.dynamoDbEndpoint
    ? { endpoint: endpoints.dynamoDbEndpoint, credentials: LOCAL_CREDENTIALS }
    : {};
  return {
    s3: new S3Client({
      region,
      ...local,
      // Local servers serve path-style URLs and do not speak the default flexible checksums.
      ...(endpoints.endpoint
        ? {
            forcePathStyle: true,
            requestChecksumCalculation: 'WHEN_REQUIRED' as const,
            responseChecksumValidation: 'WHEN_REQUIRED' as const,
          }
        : {}),
    }),
    // Local queue URLs carry a host the local server does not answer on: use the endpoint instead.
    sqs: new SQSClient({ region, ...local, ...(endpoints.endpoint ? { useQueueUrlAsEndpoint: false } : {}) }),
    sns: new SNSClient({ region, ...local }),
    dynamo: DynamoDBDocumentClient.from(new DynamoDBClient({ region, ...localDynamo }), {
      marshallOptions: { removeUndefinedValues: true },
    }),
  };
}

let shared: AwsClients | undefined;

/** The process's clients, created on first use (handlers call this outside the handler function). */
export function sharedClients(): AwsClients {
  shared ??= createClients();
  return shared;
}
