/**
 * The pipeline's contract, its only public face for code outside pipeline/ (the Lambdas, the GPU
 * worker, the local stack, the gateway, CDK, the command line, the simulation and the tests): its
 * resources and deployment settings, object keys and messages, environment variable names, API
 * routes, the study store, the bounded S3 read, errors and observability. The API's client has a
 * face of its own, pipeline/api-client.ts: it de-identifies and uploads (dcmjs, the codecs), which
 * no Lambda should bundle and no status query should load. Modules inside pipeline/ import each
 * other directly, never this file (no cycles).
 */

export * from './api-keys.js';
export * from './clients.js';
export * from './config.js';
export * from './deployment.js';
export * from './errors.js';
export type { CreateStudyRequest } from './messages.js';
export * from './messages.js';
export * from './notify.js';
export * from './observability.js';
export * from './powertools.js';
export * from './reasons.js';
export * from './resources.js';
export * from './routes.js';
export * from './s3-read.js';
export type { StudyStatus } from './store.js';
export * from './store.js';
