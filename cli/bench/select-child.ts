/**
 * The select Lambda alone in a fresh Node process, for `covidct bench memory`: reads one SQS event
 * (JSON) on stdin, runs `lambdas/select/handler.js`'s `handler` on it as the Lambda runtime would
 * (configured from the environment), and writes its peak RSS and time as JSON to the file named by
 * the first argument (stdout carries the handler's own logs). Run from dist/.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { Context, SQSEvent } from 'aws-lambda';

/** What the child reports. */
export interface SelectChildReport {
  /** RSS once Node started, before the handler module was loaded, bytes. */
  readonly rssStartBytes: number;
  /** Peak RSS of the whole process over the invocation (module load included), bytes. */
  readonly maxRssBytes: number;
  /** The invocation, ms (the first: module load and client creation included). */
  readonly ms: number;
  readonly batchItemFailures: number;
}

const out = process.argv[2];
if (out === undefined) throw new Error('usage: select-child.js OUT.json < event.json');
const rssStartBytes = process.memoryUsage().rss;
const event = JSON.parse(readFileSync(0, 'utf8')) as SQSEvent;
const t = performance.now();
const { handler } = await import('../../lambdas/select/handler.js');
const result = await handler(event, { functionName: 'covidct-select', awsRequestId: 'bench' } as Context);
const report: SelectChildReport = {
  rssStartBytes,
  // resourceUsage().maxRSS is in KiB.
  maxRssBytes: process.resourceUsage().maxRSS * 1024,
  ms: performance.now() - t,
  batchItemFailures: result.batchItemFailures.length,
};
writeFileSync(out, JSON.stringify(report));
