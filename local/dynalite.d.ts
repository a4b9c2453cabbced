/** Types for dynalite 4.0.0 (ships none): the options the local stack uses and the http.Server it returns. */
declare module 'dynalite' {
  import type { Server } from 'node:http';

  /** dynalite's options (index.js JSDoc). */
  interface DynaliteOptions {
    /** LevelDB folder; in memory when absent. */
    path?: string;
    createTableMs?: number;
    deleteTableMs?: number;
    updateTableMs?: number;
    maxItemSizeKb?: number;
    verbose?: boolean;
    debug?: boolean;
  }

  /** A DynamoDB-compatible server; `close` also closes the LevelDB store. */
  function dynalite(options?: DynaliteOptions): Server;
  export = dynalite;
}
