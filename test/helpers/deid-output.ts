/**
 * Reading what `covidct deidentify` wrote: the files of a folder, the OUT → SRC pairs of its map
 * file whatever the layout, and every UID that is neither new nor registered (pydicom, at any
 * depth and in the file meta).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { COVIDCT_IMPLEMENTATION_UID } from '../../core/dicom/encode.js';
/** The files under `dir` (relative paths, sorted; none if it does not exist). */

export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const full = join(d, entry.name);
      if (entry.isDirectory()) walk(full);
      else out.push(relative(dir, full));
    }
  };
  if (existsSync(dir)) walk(dir);
  return out.sort();
}

/**
 * Pairs (OUT relative path → SRC relative path) read from the map file, whatever its layout: in
 * JSON, an object whose own strings name one source file (by path or, with its base name unique,
 * by name) and one output file (by path, or by name with its folder named by it or an enclosing
 * object); in text, one line naming both.
 */
export function mapPairs(
  text: string,
  srcFiles: readonly string[],
  outFiles: readonly string[],
): Map<string, string> {
  const pairs = new Map<string, string>();
  const names = (v: string, rel: string) => v === rel || v.endsWith(`/${rel}`);
  const consider = (own: readonly string[], context: readonly string[]) => {
    const src = srcFiles.filter((s) => own.some((v) => names(v, s) || names(v, basename(s))));
    const out = outFiles.filter((o) =>
      own.some(
        (v) =>
          names(v, o) || (names(v, basename(o)) && [...own, ...context].some((c) => names(c, dirname(o)))),
      ),
    );
    if (src.length === 1 && out.length === 1) pairs.set(out[0]!, src[0]!);
  };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    for (const line of text.split('\n')) consider(line.split(/[\s,;]+|\t|→|->/).filter(Boolean), []);
    return pairs;
  }
  const walk = (node: unknown, context: string[]) => {
    if (Array.isArray(node)) {
      for (const n of node) walk(n, context);
      return;
    }
    if (node === null || typeof node !== 'object') return;
    const entries = Object.entries(node as Record<string, unknown>);
    const own = entries.flatMap(([k, v]) => (typeof v === 'string' ? [v, k] : [k]));
    consider(own, context);
    for (const [, v] of entries) walk(v, [...context, ...own]);
  };
  walk(json, []);
  return pairs;
}

/**
 * Every UI value under `dir` (pydicom: file meta and data set at any depth, UN read by the
 * dictionary) that is neither a new UID (`2.25.`) nor a registered DICOM UID (`1.2.840.10008.`),
 * except covidct's own implementation class UID; one line each: file, tag path, value.
 */
export function badUids(dir: string): string[] {
  const script = `
import json, os, sys, pydicom
root, allowed = sys.argv[1], sys.argv[2]
bad = []
def walk(ds, where, f):
    for e in ds:
        path = f"{where}/({e.tag.group:04X},{e.tag.element:04X})"
        if e.VR == 'SQ':
            for i, item in enumerate(e.value): walk(item, f"{path}[{i}]", f)
        elif e.VR == 'UI' and e.value:
            for v in (e.value if e.VM > 1 else [e.value]):
                v = str(v)
                if not (v.startswith('2.25.') or v.startswith('1.2.840.10008.') or v == allowed):
                    bad.append(f"{f} {path} {v}")
for d, _, names in os.walk(root):
    for n in sorted(names):
        if not n.endswith('.dcm'): continue
        f = os.path.join(d, n)
        ds = pydicom.dcmread(f, force=True)
        walk(ds.file_meta, ':meta', os.path.relpath(f, root))
        walk(ds, '', os.path.relpath(f, root))
print(json.dumps(bad))
`;
  const run = spawnSync('/usr/bin/python3', ['-W', 'ignore', '-c', script, dir, COVIDCT_IMPLEMENTATION_UID], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (run.status !== 0) throw new Error(`pydicom failed: ${run.stderr}`);
  return JSON.parse(run.stdout) as string[];
}
