/**
 * The local stack's Lambda emulation against the real local servers, with fake handlers: the SQS
 * event source (deletes, partial failures, retries, DLQ redrive, stop during a batch) and the API
 * Gateway emulation (the proxy event and result, 413, 502, base64).
 */
import { CreateQueueCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import type { APIGatewayProxyEvent, SQSEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { type ApiHandler, startApiServer } from '../local/api-server.js';
import { startEventSource } from '../local/event-source.js';
import { API_RESOURCES as PIPELINE_API_ROUTES, QUEUES } from '../pipeline/index.js';
import { receiveAllFrom, useLocalStack } from './helpers/local-stack.js';

const stack = useLocalStack();
const receiveAll = receiveAllFrom(stack);

describe('SQS event source', () => {
  it('deletes successes, redelivers reported failures, and the redrive policy moves them to the DLQ after maxReceiveCount', async () => {
    const { clients, resources, servers } = stack;
    const definition = QUEUES.ingest;
    const seen: { body: string; count: number }[] = [];
    const events: SQSEvent[] = [];
    const source = startEventSource({
      sqs: clients.sqs,
      queueUrl: resources.queueUrls.ingest,
      definition: definition.consumer,
      visibilityTimeoutSeconds: 1,
      pollWaitSeconds: 1,
      handler: async (event) => {
        events.push(event);
        const failures = [];
        for (const record of event.Records) {
          seen.push({ body: record.body, count: Number(record.attributes.ApproximateReceiveCount) });
          if (record.body.startsWith('fail')) failures.push({ itemIdentifier: record.messageId });
        }
        return { batchItemFailures: failures };
      },
    });
    try {
      for (const body of ['ok-1', 'fail-1', 'ok-2']) {
        await clients.sqs.send(
          new SendMessageCommand({
            QueueUrl: resources.queueUrls.ingest,
            MessageBody: body,
            MessageAttributes: { hospital: { DataType: 'String', StringValue: 'h1' } },
          }),
        );
      }
      const moved = await servers.fauxqs.spy.waitForMessage(
        { service: 'sqs', queueName: definition.name, body: 'fail-1' },
        'dlq',
        15_000,
      );
      expect(moved.status).toBe('dlq');
    } finally {
      await source.stop();
    }
    // Each success once; the failure once per allowed receive.
    expect(seen.filter((s) => s.body.startsWith('ok')).map((s) => s.count)).toEqual([1, 1]);
    expect(seen.filter((s) => s.body === 'fail-1').map((s) => s.count)).toEqual(
      Array.from({ length: definition.maxReceiveCount }, (_, i) => i + 1),
    );
    const dlq = await receiveAll(resources.queueUrls.ingestDlq);
    expect(dlq.map((m) => m.Body)).toEqual(['fail-1']);
    expect(await receiveAll(resources.queueUrls.ingest)).toHaveLength(0);
    expect(source.stats).toMatchObject({ deleted: 2, failed: definition.maxReceiveCount });

    // The records are the ones Lambda builds.
    const record = events[0]!.Records[0]!;
    expect(record).toMatchObject({
      eventSource: 'aws:sqs',
      eventSourceARN: resources.queueArns.ingest,
      awsRegion: 'us-east-1',
      messageAttributes: {
        hospital: { dataType: 'String', stringValue: 'h1', stringListValues: [], binaryListValues: [] },
      },
      attributes: {
        ApproximateReceiveCount: '1',
        SenderId: expect.any(String),
        SentTimestamp: expect.stringMatching(/^\d+$/),
      },
    });
    expect(record.messageId).toEqual(expect.any(String));
    expect(record.receiptHandle).toEqual(expect.any(String));
    expect(record.md5OfBody).toMatch(/^[0-9a-f]{32}$/);
  });

  it('deletes nothing when the handler throws or times out, and stop() waits for the batch in flight', async () => {
    const { clients, servers } = stack;
    const { QueueUrl } = await clients.sqs.send(new CreateQueueCommand({ QueueName: 'scratch-throws' }));
    const calls: number[] = [];
    let release: (() => void) | undefined;
    const source = startEventSource({
      sqs: clients.sqs,
      queueUrl: QueueUrl!,
      definition: { kind: 'lambda', batchSize: 10, waitSeconds: 0, timeoutSeconds: 1 },
      visibilityTimeoutSeconds: 1,
      pollWaitSeconds: 1,
      onError: () => {},
      handler: async (event) => {
        const count = Number(event.Records[0]!.attributes.ApproximateReceiveCount);
        calls.push(count);
        if (count === 1) throw new Error('boom');
        if (count === 2) await new Promise(() => {}); // past the 1 s timeout
        await new Promise<void>((resolve) => {
          release = resolve;
        });
      },
    });
    await clients.sqs.send(new SendMessageCommand({ QueueUrl: QueueUrl!, MessageBody: 'x' }));
    await expect.poll(() => calls.length, { timeout: 10_000, interval: 50 }).toBe(3);
    // The third delivery is in flight: stop() must wait for it and its delete.
    let stopped = false;
    const stopping = source.stop().then(() => {
      stopped = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(stopped).toBe(false);
    release!();
    await stopping;
    expect(calls).toEqual([1, 2, 3]);
    expect(source.stats).toMatchObject({ batches: 3, deleted: 1, failed: 2 });
    await servers.fauxqs.spy.waitForMessage(
      { service: 'sqs', queueName: 'scratch-throws', body: 'x' },
      'consumed',
      1000,
    );
  });
});

describe('API server', () => {
  const echo: ApiHandler = async (event) => ({
    statusCode: 201,
    headers: { 'X-Echo': 'yes' },
    body: JSON.stringify(event),
  });

  it('maps a request to the API Gateway proxy event and the result back', async () => {
    const api = await startApiServer({ handler: echo, routes: PIPELINE_API_ROUTES });
    try {
      const response = await fetch(`${api.url}/studies/abc%20d/report?x=1&x=2&y=3`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'X-Api-Key': 'k1' },
        body: '{"hello":"world"}',
      });
      expect(response.status).toBe(201);
      expect(response.headers.get('x-echo')).toBe('yes');
      const event = (await response.json()) as APIGatewayProxyEvent;
      expect(event).toMatchObject({
        httpMethod: 'POST',
        path: '/studies/abc%20d/report',
        resource: '/studies/{id}/report',
        pathParameters: { id: 'abc d' },
        queryStringParameters: { x: '2', y: '3' },
        multiValueQueryStringParameters: { x: ['1', '2'], y: ['3'] },
        body: '{"hello":"world"}',
        isBase64Encoded: false,
        stageVariables: null,
        requestContext: { httpMethod: 'POST', stage: 'local', resourcePath: '/studies/{id}/report' },
      });
      // API Gateway keeps the client's header spelling.
      expect(event.headers['X-Api-Key'] ?? event.headers['x-api-key']).toBe('k1');
      expect(event.requestContext.requestId).toEqual(expect.any(String));

      const list = (await (await fetch(`${api.url}/studies`)).json()) as APIGatewayProxyEvent;
      expect(list).toMatchObject({
        resource: '/studies',
        pathParameters: null,
        queryStringParameters: null,
        body: null,
      });

      const binary = (await (
        await fetch(`${api.url}/studies`, {
          method: 'POST',
          headers: { 'content-type': 'application/octet-stream' },
          body: new Uint8Array([0, 1, 2, 255]),
        })
      ).json()) as APIGatewayProxyEvent;
      expect(binary).toMatchObject({
        isBase64Encoded: true,
        body: Buffer.from([0, 1, 2, 255]).toString('base64'),
      });

      // No resource matches: API Gateway's answer, the handler never runs.
      const missing = await fetch(`${api.url}/nowhere`);
      expect(missing.status).toBe(403);
      expect(await missing.json()).toEqual({ message: 'Missing Authentication Token' });

      const health = await fetch(`${api.url}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ status: 'ok' });
    } finally {
      await api.stop();
    }
  });

  it('answers 413 over 10 MB, 502 when the handler throws, and decodes base64 results', async () => {
    let calls = 0;
    const api = await startApiServer({
      onError: () => {},
      handler: async (event) => {
        calls++;
        if (event.path === '/throw') throw new Error('boom');
        return {
          statusCode: 200,
          isBase64Encoded: true,
          headers: { 'content-type': 'image/png' },
          body: 'AAEC/w==',
        };
      },
    });
    try {
      const big = await fetch(`${api.url}/upload`, {
        method: 'PUT',
        body: new Uint8Array(10 * 1024 * 1024 + 1),
      });
      expect(big.status).toBe(413);
      expect(calls).toBe(0);
      const atLimit = await fetch(`${api.url}/upload`, {
        method: 'PUT',
        body: new Uint8Array(10 * 1024 * 1024),
      });
      expect(atLimit.status).toBe(200);
      expect(new Uint8Array(await atLimit.arrayBuffer())).toEqual(new Uint8Array([0, 1, 2, 255]));
      const thrown = await fetch(`${api.url}/throw`);
      expect(thrown.status).toBe(502);
      expect(await thrown.json()).toEqual({ message: 'Internal server error' });
    } finally {
      await api.stop();
    }
  });
});
