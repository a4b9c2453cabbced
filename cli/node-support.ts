/**
 * The command line's Node.js support notice: Node 20 reached its end of life on 2026-04-30 and
 * covidct still supports it until {@link NODE_20_SUPPORT_ENDS} (README, "Requirements"), because
 * hospital machines often run a distribution's Node 20 (Debian 13 ships it). On Node 20 the user is
 * told so once per machine, in one line on stderr, and only in a terminal: piped output, CI logs,
 * the tests and the processes covidct starts never see it. "Once" is a marker file in covidct's
 * cache folder, created exclusively, so two commands started together print it once; where the
 * folder cannot be written the notice is not shown at all rather than in every run.
 */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The day Node 20 reached its end of life upstream. */
export const NODE_20_END_OF_LIFE = '2026-04-30';
/** The last day covidct supports Node 20 (README, "Requirements"). */
export const NODE_20_SUPPORT_ENDS = '2027-04-30';

/** The line shown once on Node 20. */
export const NODE_20_NOTICE = `Node 20 reached end of life on ${NODE_20_END_OF_LIFE}; covidct supports it until ${NODE_20_SUPPORT_ENDS}, then needs Node 22 or later (shown once)`;

/**
 * covidct's cache folder: `COVIDCT_CACHE_DIR`, else `$XDG_CACHE_HOME/covidct`, else
 * `~/.cache/covidct`. The same rule as models/onnx/cache.ts's `onnxCacheDir` (its parent folder;
 * test/node-support.test.ts holds them together), written here so that the command line's start
 * does not load the ONNX exporter (about 2 s).
 */
export function covidctCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.COVIDCT_CACHE_DIR || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'covidct');
}

/** What {@link nodeSupportNotice} looks at and writes to; the process's own by default. */
export interface NoticeContext {
  /** `process.versions.node`. */
  readonly nodeVersion?: string;
  /** Whether stderr is a terminal a user reads. */
  readonly isTTY?: boolean;
  readonly env?: NodeJS.ProcessEnv;
  /** Where the line goes (stderr). */
  readonly write?: (line: string) => void;
}

/**
 * Print {@link NODE_20_NOTICE} when the command line runs on Node 20 in a terminal and this
 * machine (cache folder) has not shown it yet. Returns whether it printed. Never throws: a notice
 * must not stop a command.
 */
export function nodeSupportNotice(context: NoticeContext = {}): boolean {
  const version = context.nodeVersion ?? process.versions.node;
  const isTTY = context.isTTY ?? process.stderr.isTTY === true;
  if (version.split('.')[0] !== '20' || !isTTY) return false;
  const dir = join(covidctCacheDir(context.env), 'notices');
  try {
    mkdirSync(dir, { recursive: true });
    // 'wx': create, failing when it exists; the date in the name shows a changed date again.
    closeSync(openSync(join(dir, `node20-until-${NODE_20_SUPPORT_ENDS}`), 'wx'));
  } catch {
    return false; // shown before (EEXIST), or nowhere to remember it: not shown in every run
  }
  (context.write ?? ((line) => process.stderr.write(line)))(`covidct: ${NODE_20_NOTICE}\n`);
  return true;
}
