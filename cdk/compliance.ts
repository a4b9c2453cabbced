/**
 * Compliance: cdk-nag's AwsSolutions and HIPAA Security packs run at synth (a finding fails it),
 * and every finding the design keeps is acknowledged here, next to its reason.
 */
import { type App, type Stack, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks, HIPAASecurityChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';

/** Register the rule packs on the app: synth throws on any unacknowledged finding. */
export function addRulePacks(app: App): void {
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app), new HIPAASecurityChecks(app));
}

/** The rule packs, for tests that check a stack directly (`pack.validateScope(stack)`). */
export function rulePacks(): Array<AwsSolutionsChecks | HIPAASecurityChecks> {
  return [new AwsSolutionsChecks(), new HIPAASecurityChecks()];
}

/** Options of {@link acknowledgeFindings}. */
export interface AcknowledgeOptions {
  /** A WAF web ACL is associated with the API stage (else the WAF findings are acknowledged). */
  readonly wafAssociated: boolean;
}

function ack(scope: IConstruct | undefined, ...rules: Array<[id: string, reason: string]>): void {
  if (!scope) return;
  Validations.of(scope).acknowledge(...rules.map(([id, reason]) => ({ id, reason })));
}

/** Wildcards that `grant*()` writes, and why each is the least it can be. */
const GRANT_WILDCARDS: Array<[id: string, reason: string]> = [
  [
    'AwsSolutions-IAM5[Action::s3:GetObject*]',
    'grantRead(): GetObject plus its version/ACL/tagging reads, limited to one key prefix of the data bucket',
  ],
  [
    'AwsSolutions-IAM5[Action::s3:GetBucket*]',
    'grantRead(): bucket location/metadata reads the SDK needs, on the data bucket only',
  ],
  [
    'AwsSolutions-IAM5[Action::s3:List*]',
    'grantRead(): listing the data bucket, so a missing object is a 404 rather than a 403',
  ],
  [
    'AwsSolutions-IAM5[Action::s3:Abort*]',
    'grantPut(): aborting its own multipart uploads, limited to one key prefix',
  ],
  [
    'AwsSolutions-IAM5[Resource::<StorageData6BB23F4E.Arn>/incoming/*]',
    'objects under incoming/ (one per uploaded slice and manifest): names are per hospital/study/series, unknowable in advance',
  ],
  [
    'AwsSolutions-IAM5[Resource::<StorageData6BB23F4E.Arn>/results/*/heatmaps/*]',
    'the worker writes heatmaps only (results/{hospital}/{study}/heatmaps/{series}/{slice}.png), never a report; names are per study and slice',
  ],
  [
    'AwsSolutions-IAM5[Resource::<StorageData6BB23F4E.Arn>/results/*]',
    'objects under results/ (one report and heatmaps per study): names are per hospital/study',
  ],
  [
    'AwsSolutions-IAM5[Resource::<StorageData6BB23F4E.Arn>/models/*]',
    'the worker reads the model folder it is configured with under models/; versions are uploaded after deployment',
  ],
  [
    'AwsSolutions-IAM5[Action::kms:ReEncrypt*]',
    'grant*() on KMS-encrypted bucket/queue/table/topic: re-encryption with the stack key only',
  ],
  [
    'AwsSolutions-IAM5[Action::kms:GenerateDataKey*]',
    'grant*() on KMS-encrypted resources: data keys of the stack key only',
  ],
  [
    'AwsSolutions-IAM5[Resource::<ResultsTable7B2FF7F9.Arn>/index/*]',
    'grantReadWriteData(): queries on the table’s own GSI (byHospital)',
  ],
  [
    'AwsSolutions-IAM5[Resource::*]',
    'X-Ray PutTraceSegments/PutTelemetryRecords and the ECS agent’s DescribeClusters-style calls support no resource-level permissions',
  ],
  [
    'HIPAA.Security-IAMNoInlinePolicy',
    "grant*() writes one least-privilege inline policy per role, scoped to this stack's resources; a managed policy would be shared and broader",
  ],
];

/** Acknowledge the findings the design keeps, each with its reason, on the narrowest construct. */
export function acknowledgeFindings(stack: Stack, options: AcknowledgeOptions): void {
  const at = (path: string): IConstruct | undefined =>
    stack.node.tryFindChild(path.split('/')[0]!) && find(stack, path);
  ack(stack, ...GRANT_WILDCARDS);
  ack(
    stack,
    [
      'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      "AWS's minimal Lambda logging policy (CreateLogStream/PutLogEvents); no data access",
    ],
    [
      'AwsSolutions-L1',
      'nodejs22.x is the runtime the issue and tests target (Node 20/22 LTS features only); moving to 24 is a tested upgrade, not a default',
    ],
    [
      'HIPAA.Security-LambdaDLQ',
      "select and aggregate are SQS-triggered: failed records go to the source queue's DLQ (alarmed); the api Lambda and the key authorizer are synchronous. A function DLQ only applies to async invokes: the sweeper's, whose scheduled event carries no data (the next run is its retry; its errors are alarmed)",
    ],
    [
      'HIPAA.Security-LambdaInsideVPC',
      'the functions call only regional AWS APIs (S3, SQS, SNS, DynamoDB) over TLS with IAM; no VPC resource is reachable, and VPC attachment would add interface endpoints for SNS/X-Ray without reducing exposure',
    ],
  );
  ack(
    at('Storage/AccessLogs'),
    [
      'HIPAA.Security-S3DefaultEncryptionKMS',
      'S3 server access logs can only be delivered to an SSE-S3 bucket; the logs hold object keys, no image data',
    ],
    ['AwsSolutions-S1', 'this is the access-log bucket itself'],
  );
  ack(stack, [
    'HIPAA.Security-S3BucketReplicationEnabled',
    "cross-region replication would copy patient images to a second region: data residency is the hospital group's decision; versioning and RETAIN protect against deletion",
  ]);
  ack(at('Results/Table'), [
    'HIPAA.Security-DynamoDBInBackupPlan',
    'point-in-time recovery (35 days) and deletion protection are on; the table holds ids, counts and votes, re-derivable from S3 results',
  ]);
  ack(at('Api/KeyTable'), [
    'HIPAA.Security-DynamoDBInBackupPlan',
    'point-in-time recovery (35 days) and deletion protection are on; the table holds key hashes and hospital ids, re-creatable from the hospitals setting',
  ]);
  ack(at('Inference/WorkerTask'), [
    'AwsSolutions-ECS2',
    'the environment holds resource names/URLs and the model id, no secrets (the worker uses its task role)',
  ]);
  ack(at('Inference/HostRole'), [
    'AwsSolutions-IAM5[Action::ecs:Submit*]',
    'the ECS container instance policy CDK writes for the cluster: the agent reports task/container state changes (SubmitTaskStateChange, SubmitContainerStateChange, …) for this cluster',
  ]);
  ack(at('Inference/GpuHosts'), [
    'AwsSolutions-AS3',
    'the ECS capacity provider starts and stops the GPU hosts with the backlog; scaling events are routine, and failed worker tasks are alarmed',
  ]);
  ack(
    at('Api/RestApi'),
    [
      'AwsSolutions-COG4',
      'hospitals are machine clients with per-hospital API keys checked by a Lambda (TOKEN) authorizer against the hashed keys, not Cognito users',
    ],
    [
      'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
      "the account-level role API Gateway needs to write execution and access logs; AWS's policy for exactly that",
    ],
    [
      'HIPAA.Security-APIGWCacheEnabledAndEncrypted',
      "responses are per hospital and hold presigned URLs; caching them would serve stale or another request's URLs",
    ],
    [
      'HIPAA.Security-APIGWSSLEnabled',
      'the backend is a Lambda proxy integration, not an HTTP endpoint: there is no backend TLS connection for a client certificate to authenticate',
    ],
  );
  if (!options.wafAssociated) {
    ack(at('Api/RestApi'), [
      'AwsSolutions-APIG3',
      'no web ACL given (context wafAclArn): callers are authenticated hospitals and the stage is throttled; associate a WAF with -c wafAclArn=…',
    ]);
  }
  // CDK's singleton custom-resource handlers (bucket notifications, default security group).
  for (const child of stack.node.children) {
    if (
      child.node.id.startsWith('BucketNotificationsHandler') ||
      child.node.id.startsWith('Custom::VpcRestrictDefaultSG')
    ) {
      ack(
        child,
        [
          'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
          "CDK's deployment-time custom resource handler: logging only",
        ],
        ['AwsSolutions-L1', "CDK's own deployment-time handler; its runtime is chosen by aws-cdk-lib"],
        [
          'HIPAA.Security-LambdaDLQ',
          'CloudFormation custom resource: CloudFormation reports its failures, no async events to keep',
        ],
        [
          'HIPAA.Security-LambdaInsideVPC',
          'CDK deployment-time handler calling only S3/EC2 control-plane APIs',
        ],
        ['HIPAA.Security-LambdaConcurrency', 'runs once per deployment'],
        [
          'HIPAA.Security-IAMNoInlinePolicy',
          "CDK's own handler policy, scoped to this stack's bucket / default security group",
        ],
        [
          'AwsSolutions-IAM5[Resource::*]',
          "PutBucketNotification has no resource-level scoping in CDK's handler policy",
        ],
      );
    }
  }
}

function find(root: IConstruct, path: string): IConstruct | undefined {
  let node: IConstruct | undefined = root;
  for (const id of path.split('/')) node = node?.node.tryFindChild(id);
  return node;
}
