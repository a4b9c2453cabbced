// Give every study written before the status index (TABLE.byStatusIndex, `GET /studies?status=`)
// its index key, once, after the deploy that adds the index. Idempotent; safe while the pipeline runs
// (each write is conditional on the study's status, and a transition writes the key itself).
// Usage: npm run build && AWS_REGION=REGION node scripts/backfill-status-index.mjs TABLE_NAME
// (credentials from the default chain; the table name is a stack output). The local stack runs
// the same backfill on every start.
import { createClients, StudyStore } from '../dist/pipeline/index.js';

const table = process.argv[2];
if (!table) {
  console.error('usage: node scripts/backfill-status-index.mjs TABLE_NAME');
  process.exit(2);
}
// COVIDCT_DYNAMODB_ENDPOINT points it at a local server instead.
const clients = createClients();
const updated = await new StudyStore(clients.dynamo, table).backfillStatusIndex();
console.log(`${table}: ${updated} studies given their status index key`);
clients.dynamo.destroy();
