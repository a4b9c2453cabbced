// Move the API-key items that deployments from before the key table kept in the main table
// (`APIKEY#{sha256}`) into the key table, then delete them from the main table, so no function
// granted the main table (select, aggregate, sweeper) can read a key hash. Required once, after the
// deploy that adds the key table (README, Migration). Idempotent; the key table's own item wins
// over an old one with the same hash.
// Usage: npm run build && AWS_REGION=REGION node scripts/move-legacy-api-keys.mjs TABLE_NAME API_KEY_TABLE_NAME
// (credentials from the default chain; both names are stack outputs). The local stack does the same
// on every start.
import { createClients, moveLegacyApiKeys } from '../dist/pipeline/index.js';

const [table, keyTable] = process.argv.slice(2);
if (!table || !keyTable) {
  console.error('usage: node scripts/move-legacy-api-keys.mjs TABLE_NAME API_KEY_TABLE_NAME');
  process.exit(2);
}
// COVIDCT_DYNAMODB_ENDPOINT points it at a local server instead.
const clients = createClients();
const { copied, deleted } = await moveLegacyApiKeys(clients.dynamo, table, keyTable);
console.log(
  `${table}: ${deleted} old API-key items deleted, ${copied} of them copied into ${keyTable} (it lacked their hash)`,
);
clients.dynamo.destroy();
