/**
 * The CDK app (`npx cdk synth`, `npx cdk deploy -c key=value …`): one environment-agnostic stack
 * configured from context, checked by cdk-nag's AwsSolutions and HIPAA Security packs.
 */
import { App } from 'aws-cdk-lib';
import { addRulePacks } from './compliance.js';
import { settingsFromContext } from './settings.js';
import { CovidCtStack } from './stack.js';

const app = new App();
addRulePacks(app);
const stackName = (app.node.tryGetContext('stackName') as string | undefined) ?? 'CovidCt';
new CovidCtStack(app, stackName, {
  settings: settingsFromContext(app.node),
  description: 'covidct: COVID-19 detection from chest CT series (S3, SQS, Lambda, ECS GPU, API Gateway)',
});
app.synth();
