/**
 * cdk-nag's AwsSolutions and HIPAA Security packs with no unacknowledged finding, and the
 * deployment settings read from CDK context.
 */
import { App } from 'aws-cdk-lib';
import { Match } from 'aws-cdk-lib/assertions';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { rulePacks } from '../../cdk/compliance.js';
import { parseHospitals, settingsFromContext } from '../../cdk/settings.js';
import { DEFAULT_SETTINGS, type DeploymentSettings, ENV } from '../../pipeline/index.js';
import { build, stack, synthesize } from './stack.js';

beforeAll(synthesize);

describe('compliance: cdk-nag AwsSolutions and HIPAA Security', () => {
  it('leaves no unacknowledged finding with the defaults', () => {
    for (const pack of rulePacks()) {
      const report = pack.validateScope(stack);
      expect(report.violations.map((v) => v.ruleName)).toEqual([]);
    }
  });

  it('leaves none with WAF, Spot, e-mail, CORS and a threshold set, and those settings arrive', () => {
    const settings: DeploymentSettings = {
      ...DEFAULT_SETTINGS,
      wafAclArn: 'arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/covidct/abc',
      spot: true,
      alarmEmail: 'ops@example.org',
      corsOrigins: ['https://viewer.example.org'],
      voteThreshold: 0.1,
      gpuInstanceType: 'g5.xlarge',
      maxGpuTasks: 7,
      minGpuTasks: 1,
    };
    const built = build(settings);
    for (const pack of rulePacks()) {
      expect(pack.validateScope(built.stack).violations.map((v) => v.ruleName)).toEqual([]);
    }
    const t = built.template;
    t.resourceCountIs('AWS::WAFv2::WebACLAssociation', 1);
    t.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.org' });
    t.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        InstanceType: 'g5.xlarge',
        InstanceMarketOptions: Match.objectLike({ MarketType: 'spot' }),
      }),
    });
    t.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 1,
      MaxCapacity: 7,
    });
    t.hasResourceProperties('AWS::AutoScaling::AutoScalingGroup', { MinSize: '1', MaxSize: '7' });
    t.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ [ENV.voteThreshold]: '0.1' }) },
    });
    t.hasResourceProperties('AWS::S3::Bucket', {
      CorsConfiguration: {
        CorsRules: [Match.objectLike({ AllowedOrigins: ['https://viewer.example.org'] })],
      },
    });
  });

  it('reports a finding that nobody acknowledged (the packs are live)', () => {
    const { stack: s } = build();
    new s3.Bucket(s, 'Careless');
    const names = rulePacks().flatMap((p) => p.validateScope(s).violations.map((v) => v.ruleName));
    expect(names).toContain('AwsSolutions-S10');
  });
});

describe('settings from context', () => {
  const app = (context: Record<string, string>) => new App({ context }).node;
  it('reads -c values and defaults the rest', () => {
    const s = settingsFromContext(
      app({
        maxGpuTasks: '4',
        minGpuTasks: '1',
        spot: 'true',
        voteThreshold: '0.25',
        corsOrigins: 'https://a, https://b',
      }),
    );
    expect(s).toMatchObject({
      maxGpuTasks: 4,
      minGpuTasks: 1,
      spot: true,
      voteThreshold: 0.25,
      corsOrigins: ['https://a', 'https://b'],
    });
    expect(s.gpuInstanceType).toBe(DEFAULT_SETTINGS.gpuInstanceType);
  });
  it('rejects bad values in one line naming the setting', () => {
    expect(() => settingsFromContext(app({ maxGpuTasks: 'many' }))).toThrow(/^context maxGpuTasks: 'many'/);
    expect(() => settingsFromContext(app({ voteThreshold: '3' }))).toThrow(/^context voteThreshold/);
    expect(() => settingsFromContext(app({ spot: 'yes' }))).toThrow(/^context spot/);
    expect(() => settingsFromContext(app({ minGpuTasks: '-1' }))).toThrow(/^context minGpuTasks/);
    expect(() => build({ ...DEFAULT_SETTINGS, minGpuTasks: 3, maxGpuTasks: 2 })).toThrow(/minTasks must be/);
    expect(() => settingsFromContext(app({ wafAclArn: 'acl-1' }))).toThrow(/^context wafAclArn/);
  });
  it('reads hospitals as JSON or id:sha256 pairs, with per-hospital limits, and rejects bad entries in one line', () => {
    const a = 'a'.repeat(64);
    const b = 'b'.repeat(64);
    expect(settingsFromContext(app({ hospitals: `st-mary:${a}, city:${b}` })).hospitals).toEqual([
      { id: 'st-mary', keySha256: a },
      { id: 'city', keySha256: b },
    ]);
    expect(
      parseHospitals([{ id: 'st-mary', keySha256: a, rateLimit: 3, burstLimit: 6, quotaPerDay: 100 }]),
    ).toEqual([{ id: 'st-mary', keySha256: a, rateLimit: 3, burstLimit: 6, quotaPerDay: 100 }]);
    expect(settingsFromContext(app({ hospitalQuotaPerDay: '50' })).hospitalQuotaPerDay).toBe(50);
    expect(settingsFromContext(app({})).hospitals).toEqual([]);
    expect(() => parseHospitals(`st-mary:${a.toUpperCase()}`)).toThrow(
      /^context hospitals: \[0\]\.keySha256 \(st-mary\)/,
    );
    expect(() => parseHospitals('st-mary')).toThrow(/keySha256/);
    expect(() => parseHospitals(`a/b:${a}`)).toThrow(/^context hospitals: \[0\]\.id/);
    expect(() => parseHospitals(`x:${a},x:${b}`)).toThrow(/listed twice/);
    expect(() => parseHospitals(`x:${a},y:${a}`)).toThrow(/same key/);
    expect(() => parseHospitals([{ id: 'x', keySha256: a, rateLimit: 0 }])).toThrow(/\[0\]\.rateLimit/);
    expect(() => parseHospitals('[{"id":')).toThrow(/^context hospitals: not valid JSON/);
  });
});
