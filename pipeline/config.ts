/**
 * The environment variables the handlers and the worker read, named once. The CDK stack sets them
 * on each function and task; `covidct dev` sets the same ones for the local stack.
 */

/** Environment variable names. */
export const ENV = {
  bucket: 'COVIDCT_BUCKET',
  table: 'COVIDCT_TABLE',
  /** The API-key table (resources.ts API_KEY_TABLE): the authorizer and the api Lambda only. */
  apiKeyTable: 'COVIDCT_API_KEY_TABLE',
  ingestQueueUrl: 'COVIDCT_INGEST_QUEUE_URL',
  inferenceQueueUrl: 'COVIDCT_INFERENCE_QUEUE_URL',
  votesQueueUrl: 'COVIDCT_VOTES_QUEUE_URL',
  topicArn: 'COVIDCT_TOPIC_ARN',
  /** Default vote threshold of the deployment (a study's manifest may set its own). */
  voteThreshold: 'COVIDCT_VOTE_THRESHOLD',
  /** The model the worker loads: `{name}/{version}` under `models/` in the bucket. */
  model: 'COVIDCT_MODEL',
  /** Sweeper: seconds without progress after which a study fails (default PIPELINE_DEFAULTS.stalledStudySeconds). */
  stalledSeconds: 'COVIDCT_STALLED_SECONDS',
  /** Sweeper: seconds after creation a study still RECEIVED fails "never uploaded" (default PIPELINE_DEFAULTS.neverUploadedSeconds). */
  neverUploadedSeconds: 'COVIDCT_NEVER_UPLOADED_SECONDS',
  /** Local stack only: one endpoint for S3/SQS/SNS and one for DynamoDB. Unset on AWS. */
  endpointS3SqsSns: 'COVIDCT_ENDPOINT',
  endpointDynamoDb: 'COVIDCT_DYNAMODB_ENDPOINT',
} as const;

/** A required environment variable, or a one-line error naming it. */
export function requireEnv(name: string, env: NodeJS.ProcessEnv = process.env): string {
  const value = env[name];
  if (value === undefined || value === '') throw new Error(`environment variable ${name} is not set`);
  return value;
}
