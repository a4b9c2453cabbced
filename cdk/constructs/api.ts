/**
 * Api: the REST API in front of the api Lambda (proxy integration). Authentication is the
 * pipeline's per-hospital key: the api Lambda hashes `x-api-key` and looks the hash up in the
 * table (lambdas/api/handler.ts), so the key check and the hospital's scoping are one step that
 * the local stack runs too. API Gateway rejects requests without the header before they reach
 * the Lambda (request validation), throttles, logs access and may sit behind a WAF web ACL.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import { ENV } from '../../lambdas/shared/config.js';
import { KEYS } from '../../lambdas/shared/resources.js';
import { type FunctionCodeProvider, PipelineFunction } from '../parts.js';

/** The header carrying a hospital's API key (checked by the api Lambda against the hashed keys). */
export const API_KEY_HEADER = 'x-api-key';

/** Props of {@link Api}. */
export interface ApiProps {
  readonly bucket: s3.IBucket;
  readonly table: dynamodb.ITable;
  readonly key: kms.IKey;
  readonly logRetention: logs.RetentionDays;
  readonly reservedConcurrency: number;
  /** Steady requests per second across the stage. */
  readonly rateLimit: number;
  readonly burstLimit: number;
  /** Default vote threshold of the deployment. @default - the handler's (the paper's 0.3) */
  readonly voteThreshold?: number;
  /** A regional WAFv2 web ACL to associate. @default - none */
  readonly wafAclArn?: string;
  /** Memory of the api Lambda. @default 512 */
  readonly memorySize?: number;
  /** @default - bundle lambdas/api/handler.ts */
  readonly code?: FunctionCodeProvider;
}

/** The REST API, its access logs and the api Lambda. */
export class Api extends Construct {
  readonly api: apigateway.RestApi;
  readonly handler: PipelineFunction;
  readonly accessLogs: logs.LogGroup;

  constructor(scope: Construct, id: string, props: ApiProps) {
    super(scope, id);
    this.handler = new PipelineFunction(this, 'Handler', {
      name: 'api',
      serviceName: 'covidct-api',
      memorySize: props.memorySize ?? 512,
      // API Gateway gives up on an integration after 29 s.
      timeout: Duration.seconds(29),
      reservedConcurrentExecutions: props.reservedConcurrency,
      key: props.key,
      logRetention: props.logRetention,
      environment: {
        [ENV.bucket]: props.bucket.bucketName,
        [ENV.table]: props.table.tableName,
        ...(props.voteThreshold === undefined ? {} : { [ENV.voteThreshold]: String(props.voteThreshold) }),
      },
      ...(props.code ? { code: props.code } : {}),
    });
    const fn = this.handler.function;
    props.table.grantReadWriteData(fn); // key lookup, study records, listing index
    props.bucket.grantPut(fn, `${KEYS.incoming}*`); // presigned upload URLs are signed with this role
    props.bucket.grantRead(fn, `${KEYS.results}*`); // the report and presigned heatmap links

    this.accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.logRetention,
      encryptionKey: props.key,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.api = new apigateway.RestApi(this, 'RestApi', {
      description: 'covidct: studies in, results out (per-hospital API keys)',
      endpointTypes: [apigateway.EndpointType.REGIONAL],
      cloudWatchRole: true,
      cloudWatchRoleRemovalPolicy: RemovalPolicy.RETAIN,
      deployOptions: {
        stageName: 'v1',
        throttlingRateLimit: props.rateLimit,
        throttlingBurstLimit: props.burstLimit,
        tracingEnabled: true,
        loggingLevel: apigateway.MethodLoggingLevel.ERROR,
        // Request and response bodies hold study contents: never in execution logs.
        dataTraceEnabled: false,
        metricsEnabled: true,
        accessLogDestination: new apigateway.LogGroupLogDestination(this.accessLogs),
        accessLogFormat: apigateway.AccessLogFormat.jsonWithStandardFields({
          caller: false,
          httpMethod: true,
          ip: true,
          protocol: true,
          requestTime: true,
          resourcePath: true,
          responseLength: true,
          status: true,
          user: false,
        }),
      },
    });

    const requireKey = new apigateway.RequestValidator(this, 'RequireKey', {
      restApi: this.api,
      validateRequestParameters: true,
      validateRequestBody: false,
    });
    const requireKeyAndBody = new apigateway.RequestValidator(this, 'RequireKeyAndBody', {
      restApi: this.api,
      validateRequestParameters: true,
      validateRequestBody: true,
    });
    // The shape only; the handler validates every field with one-line errors.
    const createStudyModel = this.api.addModel('CreateStudy', {
      contentType: 'application/json',
      schema: {
        schema: apigateway.JsonSchemaVersion.DRAFT4,
        type: apigateway.JsonSchemaType.OBJECT,
        required: ['series'],
        properties: {
          series: { type: apigateway.JsonSchemaType.ARRAY, minItems: 1 },
          settings: { type: apigateway.JsonSchemaType.OBJECT },
        },
      },
    });

    const integration = new apigateway.LambdaIntegration(fn, { proxy: true });
    const keyHeader = { [`method.request.header.${API_KEY_HEADER}`]: true };
    const studies = this.api.root.addResource('studies');
    studies.addMethod('POST', integration, {
      requestParameters: keyHeader,
      requestValidator: requireKeyAndBody,
      requestModels: { 'application/json': createStudyModel },
    });
    studies.addMethod('GET', integration, { requestParameters: keyHeader, requestValidator: requireKey });
    const study = studies.addResource('{id}');
    study.addMethod('GET', integration, { requestParameters: keyHeader, requestValidator: requireKey });
    study
      .addResource('report')
      .addMethod('GET', integration, { requestParameters: keyHeader, requestValidator: requireKey });

    if (props.wafAclArn !== undefined) {
      new wafv2.CfnWebACLAssociation(this, 'Waf', {
        resourceArn: this.api.deploymentStage.stageArn,
        webAclArn: props.wafAclArn,
      });
    }
  }
}
