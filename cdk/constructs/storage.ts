/**
 * Storage: the one bucket (slices under `incoming/`, results under `results/`, models under
 * `models/`, layout from pipeline/resources.ts KEYS), KMS-encrypted, versioned, private,
 * TLS-only, with server access logs; uploads expire, results stay.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { KEYS } from '../../pipeline/index.js';

/** Props of {@link Storage}. */
export interface StorageProps {
  /** The pipeline's KMS key (bucket default encryption). */
  readonly key: kms.IKey;
  /** Days before objects under `incoming/` expire (the selection and votes are in the table by then). */
  readonly incomingExpirationDays: number;
  /** Origins allowed to PUT slices from a browser. @default - none: no CORS rule (the CLI uploads) */
  readonly corsOrigins?: readonly string[];
  /** @default RemovalPolicy.RETAIN (patient images and reports outlive the stack) */
  readonly removalPolicy?: RemovalPolicy;
}

/** The data bucket and its access-log bucket. */
export class Storage extends Construct {
  readonly bucket: s3.Bucket;
  readonly accessLogs: s3.Bucket;

  constructor(scope: Construct, id: string, props: StorageProps) {
    super(scope, id);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    // Server access logs can only be delivered to an SSE-S3 bucket (not SSE-KMS).
    this.accessLogs = new s3.Bucket(this, 'AccessLogs', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      versioned: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
      removalPolicy,
      lifecycleRules: [{ expiration: Duration.days(365), noncurrentVersionExpiration: Duration.days(30) }],
    });
    const origins = props.corsOrigins ?? [];
    this.bucket = new s3.Bucket(this, 'Data', {
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: props.key,
      bucketKeyEnabled: true,
      versioned: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: this.accessLogs,
      serverAccessLogsPrefix: 'data/',
      removalPolicy,
      lifecycleRules: [
        {
          id: 'incoming-expire',
          prefix: KEYS.incoming,
          expiration: Duration.days(props.incomingExpirationDays),
          noncurrentVersionExpiration: Duration.days(1),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
        // Results and models are kept; only their overwritten versions go.
        { id: 'noncurrent-expire', noncurrentVersionExpiration: Duration.days(30) },
      ],
      ...(origins.length > 0
        ? {
            cors: [
              {
                allowedMethods: [s3.HttpMethods.PUT],
                allowedOrigins: [...origins],
                allowedHeaders: ['*'],
                maxAge: 3600,
              },
            ],
          }
        : {}),
    });
  }
}
