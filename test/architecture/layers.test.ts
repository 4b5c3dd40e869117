// The layer rule of src/: a module may import its own layer or lower ones, never a
// higher one, and the top-level folders import each other in one direction only.
// A new folder must be given its layer here before it passes.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/**
 * Lowest first: util < transport < (tasks, inventory, playbook) < plan < node I/O
 * < (preflight, apply) < session < cli. vault is Vault's transport; agent and
 * rollout hold the node-side I/O (scripts, lock, journal, gate); state records
 * apply's steps; report is written from a finished session.
 */
const LAYERS: Record<string, number> = {
  util: 0,
  transport: 1,
  vault: 1,
  tasks: 2,
  inventory: 2,
  playbook: 2,
  plan: 3,
  agent: 4,
  rollout: 4,
  preflight: 5,
  apply: 5,
  state: 5,
  session: 6,
  report: 6,
  cli: 7,
};

/** Files at the top of src/, importable from anywhere; they themselves import nothing from src/. */
const ANYWHERE = new Set(['errors.ts', 'exit-codes.ts']);

/**
 * Imports that break the rule today, each to be removed by the change named with it.
 * Exact file pairs only (importer -> imported, relative to src/), never a whole folder.
 */
const TEMPORARY: ReadonlyArray<readonly [string, string]> = [];

type Edge = { file: string; line: number; spec: string; target: string };

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(full);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [full] : [];
  });
}

// Every relative import, export-from and dynamic import() of every src module, type-only ones included.
function importEdges(): Edge[] {
  return sourceFiles(SRC).flatMap((full) => {
    const text = readFileSync(full, 'utf8');
    const file = path.relative(SRC, full);
    return ts.preProcessFile(text, true, true).importedFiles
      .filter((f) => f.fileName.startsWith('.'))
      .map((f) => ({
        file,
        line: text.slice(0, f.pos).split('\n').length,
        spec: f.fileName,
        target: path.relative(SRC, path.resolve(path.dirname(full), f.fileName)).replace(/\.js$/, '.ts'),
      }));
  });
}

const folderOf = (file: string): string => (file.includes(path.sep) ? file.split(path.sep)[0]! : file);
const show = (e: Edge): string => `src/${e.file}:${e.line} imports '${e.spec}' (src/${e.target})`;
const allowed = (e: Edge): boolean => TEMPORARY.some(([from, to]) => from === e.file && to === e.target);

/** Pure. Folder cycles (strongly connected components of more than one folder), each with the imports forming it. */
function folderCycles(edges: readonly Edge[]): Edge[][] {
  const between = edges.filter((e) => folderOf(e.file) !== folderOf(e.target) && !ANYWHERE.has(folderOf(e.target)));
  const next = new Map<string, Set<string>>();
  for (const e of between) {
    const set = next.get(folderOf(e.file)) ?? new Set<string>();
    set.add(folderOf(e.target));
    next.set(folderOf(e.file), set);
  }
  const reaches = (from: string, to: string): boolean => {
    const seen = new Set<string>();
    const stack = [from];
    while (stack.length > 0) {
      const at = stack.pop()!;
      if (at === to) return true;
      if (seen.has(at)) continue;
      seen.add(at);
      stack.push(...(next.get(at) ?? []));
    }
    return false;
  };
  // An import is in a cycle when its target folder leads back to its own.
  const cyclic = between.filter((e) => reaches(folderOf(e.target), folderOf(e.file)));
  const groups = new Map<string, Edge[]>();
  for (const e of cyclic) {
    const members = [...next.keys()].filter((f) => reaches(f, folderOf(e.file)) && reaches(folderOf(e.file), f)).sort().join(' <-> ');
    groups.set(members, [...(groups.get(members) ?? []), e]);
  }
  return [...groups.values()];
}

describe('layers of src/', () => {
  const edges = importEdges();
  const checked = edges.filter((e) => !allowed(e));

  it('puts every top-level folder and file of src/ in a layer', () => {
    const unplaced = [...new Set(sourceFiles(SRC).map((f) => folderOf(path.relative(SRC, f))))]
      .filter((f) => !ANYWHERE.has(f) && LAYERS[f] === undefined);
    expect(unplaced, `give these a layer in LAYERS (test/architecture/layers.test.ts): ${unplaced.join(', ')}`).toEqual([]);
  });

  it('has no import from a lower layer to a higher one', () => {
    const upward = checked.filter((e) => {
      const from = LAYERS[folderOf(e.file)];
      const to = LAYERS[folderOf(e.target)];
      return from !== undefined && to !== undefined && to > from;
    });
    const lines = upward.map((e) => `${show(e)}: ${folderOf(e.file)} (layer ${LAYERS[folderOf(e.file)]}) may not import ${folderOf(e.target)} (layer ${LAYERS[folderOf(e.target)]})`);
    expect(lines, `imports going up the layers:\n${lines.join('\n')}`).toEqual([]);
  });

  it('has no import cycle between top-level folders of src/', () => {
    // Every cycle has an import that does not go down the layers: those are the ones to show.
    const notDown = (e: Edge) => !((LAYERS[folderOf(e.file)] ?? Infinity) > (LAYERS[folderOf(e.target)] ?? Infinity));
    const lines = folderCycles(checked).map((cycle) => cycle.filter(notDown).map(show).join('\n'));
    expect(lines, `folders importing each other:\n${lines.join('\n\n')}`).toEqual([]);
  });

  it('keeps errors.ts and exit-codes.ts free of imports from src/', () => {
    const lines = edges.filter((e) => ANYWHERE.has(e.file)).map(show);
    expect(lines).toEqual([]);
  });

  it('lists in TEMPORARY only imports that still exist', () => {
    const stale = TEMPORARY.filter(([from, to]) => !edges.some((e) => e.file === from && e.target === to));
    expect(stale.map(([from, to]) => `${from} -> ${to}`), 'remove these from TEMPORARY: they are fixed').toEqual([]);
  });
});

describe('folderCycles', () => {
  const edge = (file: string, target: string): Edge => ({ file, line: 1, spec: '', target });
  it('finds a cycle through three folders and ignores one-way imports and errors.ts', () => {
    const cycles = folderCycles([
      edge('a/x.ts', 'b/y.ts'), edge('b/y.ts', 'c/z.ts'), edge('c/z.ts', 'a/w.ts'),
      edge('c/z.ts', 'd/v.ts'), edge('a/x.ts', 'errors.ts'), edge('a/x.ts', 'a/w.ts'),
    ]);
    expect(cycles.map((c) => c.map((e) => `${e.file}>${e.target}`))).toEqual([['a/x.ts>b/y.ts', 'b/y.ts>c/z.ts', 'c/z.ts>a/w.ts']]);
  });
  it('finds none in a one-way graph', () => {
    expect(folderCycles([edge('a/x.ts', 'b/y.ts'), edge('b/y.ts', 'c/z.ts'), edge('a/x.ts', 'c/z.ts')])).toEqual([]);
  });
});
