/**
 * Hospitals' API keys, stored hashed in their own table (API_KEY_TABLE in resources.ts): the
 * authorizer and the api Lambda look a key's SHA-256 up here; nothing else is granted the table.
 * The key itself is never stored: its SHA-256 is also the value of the hospital's API Gateway
 * usage-plan key (the authorizer returns it as `usageIdentifierKey`), so no plaintext key exists
 * anywhere on AWS.
 */
import { createHash } from 'node:crypto';
import { DeleteCommand, type DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { scanPages } from './store-items.js';

/** The sort key of every key item (the table's key schema is shared with the main table's). */
const APIKEY_SK = 'APIKEY';

/** The SHA-256 (lowercase hex) under which an API key is stored and metered. */
export function hashApiKey(apiKey: string): string {
  return createHash('sha256').update(apiKey, 'utf8').digest('hex');
}

/** The key item's partition key for a key hash. */
function keyPk(keySha256: string): string {
  return `APIKEY#${keySha256}`;
}

/** Reads and writes of the API-key table. */
export class ApiKeyStore {
  constructor(
    private readonly dynamo: DynamoDBDocumentClient,
    /** The table's name (API_KEY_TABLE.name locally; generated on AWS). */
    readonly tableName: string,
    /** Clock, injectable for tests. */
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Map an API key (stored as its SHA-256 only) to a hospital; overwrites an existing mapping. */
  async put(apiKey: string, hospital: string): Promise<void> {
    await this.putHash(hashApiKey(apiKey), hospital);
  }

  /** Map a key's SHA-256 (what an operator hands over, never the key) to a hospital. */
  async putHash(keySha256: string, hospital: string): Promise<void> {
    await this.dynamo.send(
      new PutCommand({
        TableName: this.tableName,
        Item: { pk: keyPk(keySha256), sk: APIKEY_SK, hospital, createdAt: this.now().toISOString() },
      }),
    );
  }

  /** The hospital a key's SHA-256 belongs to, or `undefined`. */
  async hospitalForHash(keySha256: string): Promise<string | undefined> {
    const out = await this.dynamo.send(
      new GetCommand({ TableName: this.tableName, Key: { pk: keyPk(keySha256), sk: APIKEY_SK } }),
    );
    const hospital = out.Item?.hospital;
    return typeof hospital === 'string' ? hospital : undefined;
  }

  /** The hospital an API key belongs to, or `undefined`. */
  hospitalFor(apiKey: string): Promise<string | undefined> {
    return this.hospitalForHash(hashApiKey(apiKey));
  }

  /**
   * Make the table hold exactly these keys: every other key item is deleted, then each is put.
   * For the local stack, whose command line is the list of hospitals (a hospital left off a
   * restart on the same data folder loses its access). Returns the number of keys removed.
   */
  async replaceAll(keys: readonly { readonly apiKey: string; readonly hospital: string }[]): Promise<number> {
    const wanted = new Set(keys.map((k) => keyPk(hashApiKey(k.apiKey))));
    let removed = 0;
    for await (const out of scanPages(this.dynamo, {
      TableName: this.tableName,
      ProjectionExpression: 'pk, sk',
    })) {
      for (const item of out.Items ?? []) {
        if (typeof item.pk !== 'string' || wanted.has(item.pk)) continue;
        await this.dynamo.send(
          new DeleteCommand({ TableName: this.tableName, Key: { pk: item.pk, sk: item.sk } }),
        );
        removed++;
      }
    }
    for (const { apiKey, hospital } of keys) await this.put(apiKey, hospital);
    return removed;
  }
}

/** What {@link moveLegacyApiKeys} did. */
export interface LegacyKeysMoved {
  /** Old items copied into the key table (it had no item for their hash). */
  readonly copied: number;
  /** Old items deleted from the main table (every one found). */
  readonly deleted: number;
}

/**
 * Move the `APIKEY#…` items that deployments from before the key table kept in the main table:
 * each is copied into the key table unless that table already holds its hash (the key table's item
 * wins), then deleted from the main table, so no function granted the main table (select,
 * aggregate, sweeper) can read a key hash. Idempotent; a copy is conditional, so running it while
 * keys are being added changes no newer mapping.
 */
export async function moveLegacyApiKeys(
  dynamo: DynamoDBDocumentClient,
  mainTableName: string,
  keyTableName: string,
): Promise<LegacyKeysMoved> {
  let copied = 0;
  let deleted = 0;
  const legacy = scanPages(dynamo, {
    TableName: mainTableName,
    FilterExpression: 'begins_with(pk, :p) AND sk = :sk',
    ExpressionAttributeValues: { ':p': 'APIKEY#', ':sk': APIKEY_SK },
  });
  for await (const out of legacy) {
    for (const item of out.Items ?? []) {
      try {
        await dynamo.send(
          new PutCommand({
            TableName: keyTableName,
            Item: item,
            ConditionExpression: 'attribute_not_exists(pk)',
          }),
        );
        copied++;
      } catch (error) {
        if ((error as Error | undefined)?.name !== 'ConditionalCheckFailedException') throw error;
      }
      await dynamo.send(new DeleteCommand({ TableName: mainTableName, Key: { pk: item.pk, sk: item.sk } }));
      deleted++;
    }
  }
  return { copied, deleted };
}
