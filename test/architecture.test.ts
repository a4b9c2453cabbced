/**
 * The architecture as written is the architecture in the code: the layer table of
 * docs/ARCHITECTURE.md (which folder may import which at run time) is checked against the import
 * graph built from the sources with TypeScript's own parser, and the README's layout table against
 * the folders git tracks.
 *
 * Run-time imports are what the emitted JavaScript loads: import and export declarations with a
 * module specifier, `import x = require(…)` and dynamic `import(…)`. `import type` and
 * `export type` are erased and do not count; `import { type A }` does count, because under
 * `verbatimModuleSyntax` (tsconfig.json) it is emitted as `import {} from …`, which loads the module.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const ARCHITECTURE = 'docs/ARCHITECTURE.md';
/** The cell of the layer table that lets a folder import every other. */
const EVERYTHING = 'everything';

/** One row of the layer table: these folders may import those (their own files always). */
interface LayerRow {
  readonly folders: readonly string[];
  readonly mayImport: readonly string[] | typeof EVERYTHING;
}

/** Backticked folder names in a table cell: `` `core/` `` → `core`. */
function folderNames(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+?)\/?`/g)].map((m) => m[1]!.replace(/\/$/, ''));
}

/** The cells of the markdown table that follows `heading` in `text`. */
function tableAfter(text: string, heading: RegExp, file: string): string[][] {
  const lines = text.split('\n');
  const start = lines.findIndex((line) => heading.test(line));
  if (start < 0) throw new Error(`${file}: no heading matching ${heading}`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 1)) {
    if (/^#{1,6} /.test(line)) break;
    if (!line.startsWith('|')) {
      if (rows.length > 0) break;
      continue;
    }
    const cells = line
      .slice(1, line.endsWith('|') ? -1 : undefined)
      .split('|')
      .map((cell) => cell.trim());
    if (cells.every((cell) => /^:?-+:?$/.test(cell))) continue;
    rows.push(cells);
  }
  if (rows.length < 2) throw new Error(`${file}: no table after the heading matching ${heading}`);
  return rows.slice(1); // the header row
}

/** The layer table of docs/ARCHITECTURE.md (section "Layers": folder | may import at run time | …). */
function layerTable(): LayerRow[] {
  const text = readFileSync(join(root, ARCHITECTURE), 'utf8');
  return tableAfter(text, /^## .*Layers/, ARCHITECTURE).map((cells) => {
    const folders = folderNames(cells[0] ?? '');
    const allowed = cells[1] ?? '';
    if (folders.length === 0) throw new Error(`${ARCHITECTURE}: a layer row names no folder: ${cells[0]}`);
    return {
      folders,
      mayImport: allowed.toLowerCase().includes(EVERYTHING) ? EVERYTHING : folderNames(allowed),
    };
  });
}

/** Every .ts file under `folder` (relative to the root, `/`-separated). */
function sourceFiles(folder: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules' && entry.name !== 'fixtures') walk(path);
      } else if (entry.name.endsWith('.ts')) out.push(path);
    }
  };
  if (existsSync(join(root, folder))) walk(folder);
  return out;
}

/** The module specifiers the TypeScript `code` of `file` loads at run time (see the header for what counts). */
function runtimeSpecifiers(file: string, code: string): string[] {
  const source = ts.createSourceFile(file, code, ts.ScriptTarget.Latest);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      if (!node.importClause?.isTypeOnly && ts.isStringLiteral(node.moduleSpecifier)) {
        found.push(node.moduleSpecifier.text);
      }
    } else if (ts.isExportDeclaration(node)) {
      if (!node.isTypeOnly && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
        found.push(node.moduleSpecifier.text);
      }
    } else if (ts.isImportEqualsDeclaration(node)) {
      const ref = node.moduleReference;
      if (!node.isTypeOnly && ts.isExternalModuleReference(ref) && ts.isStringLiteral(ref.expression)) {
        found.push(ref.expression.text);
      }
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] !== undefined &&
      ts.isStringLiteralLike(node.arguments[0])
    ) {
      found.push(node.arguments[0].text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The file a relative specifier of `from` names (`./x.js` is `./x.ts` in the sources), or undefined for a package. */
function resolveSpecifier(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined;
  const target = relative(root, resolve(root, dirname(from), specifier))
    .split(sep)
    .join('/');
  for (const candidate of [target.replace(/\.(m?)js$/, '.$1ts'), `${target}.ts`, `${target}/index.ts`]) {
    if (
      candidate !== target &&
      existsSync(join(root, candidate)) &&
      statSync(join(root, candidate)).isFile()
    ) {
      return candidate;
    }
  }
  return target;
}

/** The top-level folder of a root-relative path. */
const topFolder = (path: string): string => path.split('/')[0]!;

/** The run-time import graph of every .ts file in the layer folders but test/: file → files it loads. */
function importGraph(folders: readonly string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const folder of folders) {
    for (const file of sourceFiles(folder)) {
      const targets = runtimeSpecifiers(file, readFileSync(join(root, file), 'utf8'))
        .map((specifier) => resolveSpecifier(file, specifier))
        .filter((target): target is string => target !== undefined);
      graph.set(file, [...new Set(targets)]);
    }
  }
  return graph;
}

/** Strongly connected components of more than one file (Tarjan), each sorted. */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const connect = (node: string): void => {
    index.set(node, next);
    low.set(node, next);
    next += 1;
    stack.push(node);
    onStack.add(node);
    for (const target of graph.get(node) ?? []) {
      if (!graph.has(target)) continue;
      if (!index.has(target)) {
        connect(target);
        low.set(node, Math.min(low.get(node)!, low.get(target)!));
      } else if (onStack.has(target)) {
        low.set(node, Math.min(low.get(node)!, index.get(target)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const node of [...graph.keys()].sort()) if (!index.has(node)) connect(node);
  return found;
}

/** The top-level folders git tracks (dot-folders included), or those of the work tree outside git. */
function trackedTopFolders(): string[] {
  const files = execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8' }).split('\0');
  return [...new Set(files.filter((file) => file.includes('/')).map(topFolder))].sort();
}

const rows = layerTable();
const layerFolders = rows.flatMap((row) => row.folders);
const graphFolders = layerFolders.filter((folder) => folder !== 'test');
const graph = importGraph(graphFolders);

describe('the layers of docs/ARCHITECTURE.md', () => {
  it('name every folder that holds TypeScript sources, each once', () => {
    expect(new Set(layerFolders).size).toBe(layerFolders.length);
    const withSources = trackedTopFolders().filter((folder) => sourceFiles(folder).length > 0);
    expect(withSources.filter((folder) => !layerFolders.includes(folder))).toEqual([]);
    // A row whose "may import" cell names a folder that is not a layer is a typo in the table.
    const unknown = rows.flatMap((row) =>
      row.mayImport === EVERYTHING ? [] : row.mayImport.filter((folder) => !layerFolders.includes(folder)),
    );
    expect(unknown).toEqual([]);
  });

  it('are obeyed by every run-time import', () => {
    const allowed = new Map<string, ReadonlySet<string> | typeof EVERYTHING>();
    for (const row of rows) {
      for (const folder of row.folders) {
        allowed.set(folder, row.mayImport === EVERYTHING ? EVERYTHING : new Set([folder, ...row.mayImport]));
      }
    }
    expect(graph.size).toBeGreaterThan(100);
    const violations: string[] = [];
    for (const [file, targets] of graph) {
      const may = allowed.get(topFolder(file));
      if (may === EVERYTHING) continue;
      for (const target of targets) {
        if (!may?.has(topFolder(target))) violations.push(`${file} → ${target}`);
      }
    }
    expect(violations, `imports ${ARCHITECTURE} does not allow`).toEqual([]);
  });

  it('reach pipeline/ only through the public faces the document names', () => {
    const text = readFileSync(join(root, ARCHITECTURE), 'utf8');
    const sentence = /reaches it through its public faces only:(.*?)\.\s/.exec(text.replace(/\n/g, ' '));
    expect(sentence, `${ARCHITECTURE} names pipeline/'s public faces`).not.toBeNull();
    const faces = [...(sentence?.[1] ?? '').matchAll(/`(pipeline\/[\w-]+\.ts)`/g)].map((m) => m[1]);
    expect(faces.length).toBeGreaterThan(0);
    const deep: string[] = [];
    for (const [file, targets] of graph) {
      if (topFolder(file) === 'pipeline') continue;
      for (const target of targets) {
        if (topFolder(target) === 'pipeline' && !faces.includes(target)) deep.push(`${file} → ${target}`);
      }
    }
    expect(deep, 'imports past pipeline/index.ts and pipeline/api-client.ts').toEqual([]);
  });

  it('form no run-time import cycle', () => {
    expect(cycles(graph), 'run-time import cycles (type-only imports excluded)').toEqual([]);
  });

  it('find a cycle, and tell run-time imports from type-only ones', () => {
    expect(
      cycles(
        new Map([
          ['a', ['b']],
          ['b', ['c']],
          ['c', ['a']],
          ['d', ['a']],
        ]),
      ),
    ).toEqual([['a', 'b', 'c']]);
    expect(
      cycles(
        new Map([
          ['a', ['b']],
          ['b', []],
        ]),
      ),
    ).toEqual([]);
    const probe = (code: string): string[] => runtimeSpecifiers('probe.ts', code);
    const code = [
      "import type { A } from './a.js';",
      "import { type B } from './b.js';",
      "import './c.js';",
      "export type { D } from './d.js';",
      "export { e } from './e.js';",
      "const f = await import('./f.js');",
      "let g: import('./g.js').G;",
    ].join('\n');
    expect(probe(code)).toEqual(['./b.js', './c.js', './e.js', './f.js']);
  });
});

describe("the README's layout table", () => {
  it('lists every top-level folder git tracks, and none that is gone', () => {
    const text = readFileSync(join(root, 'README.md'), 'utf8');
    const listed = tableAfter(text, /^## Layout/, 'README.md').flatMap((cells) =>
      folderNames(cells[0] ?? ''),
    );
    const tracked = trackedTopFolders();
    expect(
      tracked.filter((folder) => !listed.includes(folder)),
      'tracked folders the README omits',
    ).toEqual([]);
    const gone = listed.filter(
      (folder) => !existsSync(join(root, folder)) || !tracked.includes(topFolder(folder)),
    );
    expect(gone, 'folders the README lists that are not tracked').toEqual([]);
  });
});
