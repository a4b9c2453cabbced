/**
 * Api: the REST API in front of the api Lambda (proxy integration). Every method first runs the
 * key authorizer (a TOKEN authorizer on `x-api-key`, lambdas/authorizer/): it hashes the key and
 * looks the hash up in the API-key table, refusing a missing key (401) or an unknown one (403)
 * before the api Lambda runs, and returns the hash as the usage-identifier key (API key source
 * AUTHORIZER). Each configured hospital has a usage plan (its own throttle and daily quota) whose
 * API key's value is that same hash, so API Gateway meters each hospital separately and no
 * plaintext key is stored anywhere. The api Lambda looks the key up again to scope every route to
 * its hospital (the same code the local stack runs). The stage throttle caps all traffic; access
 * is logged; a WAF web ACL may sit in front.
 */
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import type { HospitalSetting } from '../../pipeline/index.js';
import {
  API_KEY_HEADER,
  API_KEY_TABLE,
  API_ROUTES,
  type ApiRoute,
  ENV,
  KEYS,
  REFUSAL_MESSAGES,
} from '../../pipeline/index.js';
import { type FunctionCodeProvider, PipelineFunction, pipelineTable } from '../parts.js';

/** A hospital's usage plan limits, after defaults. */
export interface HospitalLimits {
  readonly rateLimit: number;
  readonly burstLimit: number;
  readonly quotaPerDay: number;
}

/** Props of {@link Api}. */
export interface ApiProps {
  readonly bucket: s3.IBucket;
  readonly table: dynamodb.ITable;
  readonly key: kms.IKey;
  readonly logRetention: logs.RetentionDays;
  readonly reservedConcurrency: number;
  /** Steady requests per second across the stage (every caller, known or not). */
  readonly rateLimit: number;
  readonly burstLimit: number;
  /** The hospitals allowed in, each with its usage plan. @default - none: every request is refused */
  readonly hospitals?: readonly HospitalSetting[];
  /** Limits of a hospital whose entry sets none. */
  readonly hospitalDefaults: HospitalLimits;
  /** Seconds API Gateway caches the authorizer's answer per key. @default 300 */
  readonly authorizerCacheSeconds?: number;
  /** @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
  /** Default vote threshold of the deployment. @default - the handler's (the paper's 0.3) */
  readonly voteThreshold?: number;
  /** A regional WAFv2 web ACL to associate. @default - none */
  readonly wafAclArn?: string;
  /** Memory of the api Lambda. @default 512 */
  readonly memorySize?: number;
  /** @default - bundle lambdas/api/handler.ts */
  readonly code?: FunctionCodeProvider;
}

/** The REST API, its access logs, the key authorizer and its table, the usage plans and the api Lambda. */
export class Api extends Construct {
  readonly api: apigateway.RestApi;
  readonly handler: PipelineFunction;
  readonly accessLogs: logs.LogGroup;
  /** The hospitals' hashed API keys (only the authorizer and the api Lambda are granted it). */
  readonly keyTable: dynamodb.Table;
  /** The key authorizer's function. */
  readonly authorizerFunction: PipelineFunction;
  readonly authorizer: apigateway.TokenAuthorizer;
  /** One usage plan per hospital, by hospital id. */
  readonly usagePlans: ReadonlyMap<string, apigateway.UsagePlan>;

  constructor(scope: Construct, id: string, props: ApiProps) {
    super(scope, id);
    this.keyTable = pipelineTable(this, 'KeyTable', API_KEY_TABLE, props);
    this.authorizerFunction = new PipelineFunction(this, 'Authorizer', {
      name: 'authorizer',
      settings: props,
      memorySize: 256,
      // One GetItem; API Gateway waits at most 10 s for an authorizer.
      timeout: Duration.seconds(10),
      environment: { [ENV.apiKeyTable]: this.keyTable.tableName },
    });
    this.keyTable.grantReadData(this.authorizerFunction.function);
    this.handler = new PipelineFunction(this, 'Handler', {
      name: 'api',
      settings: props,
      memorySize: props.memorySize ?? 512,
      // API Gateway gives up on an integration after 29 s.
      timeout: Duration.seconds(29),
      environment: {
        [ENV.bucket]: props.bucket.bucketName,
        [ENV.table]: props.table.tableName,
        [ENV.apiKeyTable]: this.keyTable.tableName,
        ...(props.voteThreshold === undefined ? {} : { [ENV.voteThreshold]: String(props.voteThreshold) }),
      },
    });
    const fn = this.handler.function;
    props.table.grantReadWriteData(fn); // study records, listing index
    this.keyTable.grantReadData(fn); // key → hospital, to scope each route
    props.bucket.grantPut(fn, `${KEYS.incoming}*`); // presigned upload URLs are signed with this role
    props.bucket.grantRead(fn, `${KEYS.results}*`); // the report and presigned heatmap links

    this.accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.logRetention,
      encryptionKey: props.key,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.api = new apigateway.RestApi(this, 'RestApi', {
      description: 'covidct: studies in, results out (per-hospital API keys and usage plans)',
      endpointTypes: [apigateway.EndpointType.REGIONAL],
      // The usage-plan key is what the authorizer returns (the key's hash), not the header itself.
      apiKeySourceType: apigateway.ApiKeySourceType.AUTHORIZER,
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

    this.authorizer = new apigateway.TokenAuthorizer(this, 'KeyAuthorizer', {
      handler: this.authorizerFunction.function,
      identitySource: apigateway.IdentitySource.header(API_KEY_HEADER),
      resultsCacheTtl: Duration.seconds(props.authorizerCacheSeconds ?? 300),
    });
    // The authorizer's refusals answer with the api Lambda's own one-line messages (and the local stack's).
    this.api.addGatewayResponse('Unauthorized', {
      type: apigateway.ResponseType.UNAUTHORIZED,
      statusCode: '401',
      templates: { 'application/json': JSON.stringify({ message: REFUSAL_MESSAGES.missing }) },
    });
    this.api.addGatewayResponse('AccessDenied', {
      type: apigateway.ResponseType.ACCESS_DENIED,
      statusCode: '403',
      templates: { 'application/json': JSON.stringify({ message: REFUSAL_MESSAGES.unknown }) },
    });
    // A stored key whose hash is in no usage plan of the stage (the hospital is missing from the
    // `hospitals` setting, or its deploy has not run yet).
    this.api.addGatewayResponse('InvalidApiKey', {
      type: apigateway.ResponseType.INVALID_API_KEY,
      statusCode: '403',
      templates: {
        'application/json': JSON.stringify({ message: 'API key has no usage plan on this deployment' }),
      },
    });

    const integration = new apigateway.LambdaIntegration(fn, { proxy: true });
    const keyHeader = { [`method.request.header.${API_KEY_HEADER}`]: true };
    const guarded = {
      authorizer: this.authorizer,
      authorizationType: apigateway.AuthorizationType.CUSTOM,
      apiKeyRequired: true,
      requestParameters: keyHeader,
    };
    // The resources and methods of the route table (pipeline/routes.ts), as the api Lambda dispatches.
    for (const route of API_ROUTES as readonly ApiRoute[]) {
      const resource = this.api.root.resourceForPath(route.resource);
      resource.addMethod(route.method, integration, {
        ...guarded,
        ...(route.validatesBody
          ? { requestValidator: requireKeyAndBody, requestModels: { 'application/json': createStudyModel } }
          : { requestValidator: requireKey }),
      });
    }

    // One usage plan per hospital: its throttle and quota, and the API key API Gateway matches the
    // authorizer's usageIdentifierKey against (value = SHA-256 of the hospital's key).
    const plans = new Map<string, apigateway.UsagePlan>();
    const stackName = Stack.of(this).stackName;
    for (const h of props.hospitals ?? []) {
      const plan = this.api.addUsagePlan(`Plan-${h.id}`, {
        name: `${stackName}-${h.id}`,
        description: `covidct: hospital ${h.id}`,
        throttle: {
          rateLimit: h.rateLimit ?? props.hospitalDefaults.rateLimit,
          burstLimit: h.burstLimit ?? props.hospitalDefaults.burstLimit,
        },
        quota: { limit: h.quotaPerDay ?? props.hospitalDefaults.quotaPerDay, period: apigateway.Period.DAY },
        apiStages: [{ api: this.api, stage: this.api.deploymentStage }],
      });
      plan.addApiKey(
        new apigateway.ApiKey(this, `Key-${h.id}`, {
          apiKeyName: `${stackName}-${h.id}`,
          description: `covidct: SHA-256 of hospital ${h.id}'s API key (the key itself is not stored)`,
          value: h.keySha256,
          enabled: true,
        }),
      );
      plans.set(h.id, plan);
    }
    this.usagePlans = plans;

    if (props.wafAclArn !== undefined) {
      new wafv2.CfnWebACLAssociation(this, 'Waf', {
        resourceArn: this.api.deploymentStage.stageArn,
        webAclArn: props.wafAclArn,
      });
    }
  }
}
