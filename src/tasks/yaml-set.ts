import { isDeepStrictEqual } from 'node:util';
import { Document, isMap, isScalar, isSeq, parseAllDocuments, type Pair, type YAMLMap } from 'yaml';
import { FileContentError } from '../errors.js';
import { yamlErrorText } from '../util/yaml-location.js';

/** What setting a subtree would do to a YAML file. */
export type YamlSetResult =
  | { status: 'changed'; after: string }
  | { status: 'unchanged'; reason: string }
  /** The file already holds something at the path that the plan must not rewrite. */
  | { status: 'conflict'; reason: string };

/**
 * How yaml.set treats what is already there. `exclusive`: the path's parent
 * holds nothing else (one HSM kind: `hsm.kmip` beside a planned `hsm.vault` is
 * refused). `exact`: keys inside the subtree that the value lacks are removed
 * (by default a user's own keys stay).
 */
export type YamlSetOptions = { exclusive?: boolean; exact?: boolean };

// One byte-range replacement of the original text.
type Edit = { start: number; end: number; text: string };

/**
 * Pure. Sets `value` at `path`, touching only the bytes it must: a missing top
 * key is appended as a new block; an existing subtree is updated in place, key
 * by key (a scalar that differs is rewritten in its own quoting style, a
 * missing key is added after its siblings with their indentation, or inside
 * a flow mapping), so comments, order and every other byte stay. Equal is
 * `unchanged`; a shape it cannot update in place (a scalar where a mapping is
 * planned, a block scalar, `exclusive` with a sibling) is `conflict`. The
 * result is parsed again and must hold exactly the planned data, else
 * FileContentError. Throws FileContentError when `before` is not one YAML
 * mapping document.
 */
export function setYamlPath(before: string, path: readonly string[], value: unknown, opts: YamlSetOptions = {}): YamlSetResult {
  const top = path[0];
  if (top === undefined) throw new Error('setYamlPath needs a non-empty path');
  const doc = parseSingleMapping(before);
  const dotted = path.join('.');
  const eol = before.includes('\r\n') ? '\r\n' : '\n';
  const indent = detectIndent(before);
  if (!doc.has(top)) {
    const nested = path.slice(1).reduceRight<unknown>((inner, key) => ({ [key]: inner }), value);
    const block = new Document({ [top]: nested }).toString({ indent, lineWidth: 0 });
    const prefix = before === '' || before.endsWith('\n') ? before : before + eol;
    return verified(before, prefix + block.replace(/\n/g, eol), expectedAfter(doc, path, value, opts),
      `appending \`${top}\` would not produce the planned document (unusual structure at the end of the file, such as a \`...\` end marker); add the section by hand`);
  }
  // The deepest mapping on the path that exists, and the first key it lacks.
  let map = doc.contents as YAMLMap;
  let i = 0;
  let leaf: unknown;
  for (; i < path.length; i++) {
    const pair = findPair(map, path[i]!);
    if (!pair) break;
    if (i === path.length - 1) {
      leaf = pair.value;
      break;
    }
    if (!isMap(pair.value)) return conflict(`\`${path.slice(0, i + 1).join('.')}\` is not a mapping, so \`${dotted}\` cannot be set inside it; change it by hand`);
    map = pair.value;
  }
  const parentPath = path.slice(0, -1).join('.');
  if (opts.exclusive && (i >= path.length - 1) && map.items.some((p) => keyOf(p) !== path[path.length - 1])) {
    const others = map.items.map(keyOf).filter((k) => k !== path[path.length - 1]);
    return conflict(`\`${parentPath}\` already holds ${others.map((k) => `\`${parentPath}.${k}\``).join(', ')}, and the playbook allows only \`${dotted}\` there; remove ${others.length > 1 ? 'those' : 'it'} by hand first`);
  }
  const edits: Edit[] = [];
  if (i < path.length && leaf === undefined && findPair(map, path[i]!) === undefined) {
    const nested = path.slice(i + 1).reduceRight<unknown>((inner, key) => ({ [key]: inner }), value);
    const problem = insertEntry(before, map, path[i]!, nested, indent, eol, edits);
    if (problem) return conflict(`${dotted}: ${problem}`);
  } else {
    if (leaf !== undefined && isDeepStrictEqual(toPlain(leaf), value)) return { status: 'unchanged', reason: `${dotted} already holds the planned values` };
    const problem = updateNode(before, leaf, value, path.join('.'), opts, indent, eol, edits, map.flow === true);
    if (problem) return conflict(problem);
    if (edits.length === 0) return { status: 'unchanged', reason: `${dotted} already holds the planned values (and keys of your own, kept)` };
  }
  return verified(before, applyEdits(before, edits), expectedAfter(doc, path, value, opts),
    `setting \`${dotted}\` in place would not produce the planned document (an unusual layout near it, such as anchors, aliases or tags); change it by hand`);
}

function conflict(reason: string): YamlSetResult {
  return { status: 'conflict', reason };
}

// The planned document as data: the subtree replaced (exact) or merged into (own keys kept).
function expectedAfter(doc: Document.Parsed, path: readonly string[], value: unknown, opts: YamlSetOptions): unknown {
  const plain = structuredClone(toPlain(doc.contents)) as Record<string, unknown>;
  let at = plain;
  for (const key of path.slice(0, -1)) {
    if (!at[key] || typeof at[key] !== 'object') at[key] = {};
    at = at[key] as Record<string, unknown>;
  }
  const last = path[path.length - 1]!;
  at[last] = opts.exact ? value : mergeKeep(at[last], value);
  return plain;
}

// `want` over `have`, keys of `have` that `want` lacks kept (recursively, for mappings on both sides).
function mergeKeep(have: unknown, want: unknown): unknown {
  if (!isPlainObject(have) || !isPlainObject(want)) return want;
  const out: Record<string, unknown> = { ...have };
  for (const [k, v] of Object.entries(want)) out[k] = k in have ? mergeKeep(have[k], v) : v;
  return out;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

// The edited text, re-read: it must hold exactly the planned data, or nothing is written (`problem` says why).
function verified(before: string, after: string, expected: unknown, problem: string): YamlSetResult {
  if (!isDeepStrictEqual(plainOrNull(after), expected)) throw new FileContentError(problem);
  return after === before ? { status: 'unchanged', reason: 'the file already holds the planned values' } : { status: 'changed', after };
}

function findPair(map: YAMLMap, key: string): Pair | undefined {
  return map.items.find((p) => keyOf(p) === key);
}

function keyOf(p: Pair): string {
  return String(isScalar(p.key) ? p.key.value : p.key);
}

// `node` (the existing value at `where`, inside a flow mapping when `flow`) made to hold `want`: scalars rewritten, mappings merged.
function updateNode(text: string, node: unknown, want: unknown, where: string, opts: YamlSetOptions, indent: number, eol: string, edits: Edit[], flow: boolean): string | null {
  if (isPlainObject(want)) {
    if (!isMap(node)) return `\`${where}\` is not a mapping in the file, and the plan sets one there; change it by hand`;
    for (const [k, v] of Object.entries(want)) {
      const pair = findPair(node, k);
      if (!pair) {
        const problem = insertEntry(text, node, k, v, indent, eol, edits);
        if (problem) return `${where}.${k}: ${problem}`;
        continue;
      }
      if (isDeepStrictEqual(toPlain(pair.value), v)) continue;
      const problem = updateNode(text, pair.value, v, `${where}.${k}`, opts, indent, eol, edits, node.flow === true);
      if (problem) return problem;
    }
    if (opts.exact) {
      for (const pair of node.items) if (!(keyOf(pair) in want)) removeEntry(text, node, pair, edits);
    }
    return null;
  }
  if (isMap(node) || isSeq(node) || isPlainObject(want) || Array.isArray(want)) return `\`${where}\` holds a ${isMap(node) ? 'mapping' : isSeq(node) ? 'list' : 'value'} of another shape than the plan's; change it by hand`;
  if (!isScalar(node) || !node.range) return `\`${where}\` has no value in the file to update; change it by hand`;
  if (node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED') return `\`${where}\` is a block scalar (\`|\` or \`>\`); rollout rewrites one-line values only: change it by hand`;
  edits.push({ start: node.range[0], end: node.range[1], text: scalarText(want, node.type, flow) });
  return null;
}

// A scalar as YAML text, in the style the old one had where it can be kept.
function scalarText(v: unknown, style: string | undefined, flow: boolean): string {
  if (typeof v !== 'string') return v === null ? 'null' : String(v);
  if (style === 'QUOTE_DOUBLE') return JSON.stringify(v);
  if (style === 'QUOTE_SINGLE') return `'${v.replace(/'/g, "''")}'`;
  const plain = new Document(v).toString({ lineWidth: 0 }).replace(/\n$/, '');
  if (plain.includes('\n')) return JSON.stringify(v);
  return flow && /[,{}[\]]/.test(plain) ? JSON.stringify(v) : plain;
}

// Where the line holding `pos` ends (after its newline), or the text's end.
function lineEnd(text: string, pos: number): number {
  if (pos > 0 && text[pos - 1] === '\n') return pos;
  const nl = text.indexOf('\n', pos);
  return nl === -1 ? text.length : nl + 1;
}

function lineStart(text: string, pos: number): number {
  return text.lastIndexOf('\n', pos - 1) + 1;
}

// Adds `key: value` to a mapping: after its last entry, indented as its entries (block), or before its `}` (flow).
function insertEntry(text: string, map: YAMLMap, key: string, value: unknown, indent: number, eol: string, edits: Edit[]): string | null {
  if (!map.range) return 'its mapping has no place in the file to add to';
  if (map.flow) {
    const close = text.lastIndexOf('}', map.range[1]);
    if (close < map.range[0]) return 'its flow mapping has no closing brace';
    const entry = new Document({ [key]: value }).toString({ lineWidth: 0, collectionStyle: 'flow' }).trim().replace(/^\{\s*|\s*\}$/g, '');
    let end = close;
    while (end > map.range[0] + 1 && /\s/.test(text[end - 1]!)) end--;
    if (end === map.range[0] + 1) edits.push({ start: end, end: close, text: ` ${entry} ` });
    else edits.push({ start: end, end, text: `, ${entry}` });
    return null;
  }
  const first = map.items[0];
  const last = map.items[map.items.length - 1];
  if (!first || !last || !isScalar(first.key) || !first.key.range) return 'its mapping is empty in the file; add the keys by hand';
  const column = first.key.range[0] - lineStart(text, first.key.range[0]);
  const lastNode = (last.value ?? last.key) as { range?: [number, number, number] } | null;
  if (!lastNode?.range) return 'its mapping has no place in the file to add to';
  const at = lineEnd(text, lastNode.range[1]);
  const block = new Document({ [key]: value }).toString({ indent, lineWidth: 0 });
  const lines = block.replace(/\n$/, '').split('\n').map((l) => ' '.repeat(column) + l);
  const needsBreak = at === text.length && !text.endsWith('\n');
  edits.push({ start: at, end: at, text: `${needsBreak ? eol : ''}${lines.join(eol)}${eol}` });
  return null;
}

// Removes one entry of a mapping: its whole lines (block), or the entry and one comma (flow).
function removeEntry(text: string, map: YAMLMap, pair: Pair, edits: Edit[]): void {
  const keyNode = pair.key as { range?: [number, number, number] };
  const valueNode = (pair.value ?? pair.key) as { range?: [number, number, number] };
  if (!keyNode.range || !valueNode.range) return;
  if (!map.flow) {
    edits.push({ start: lineStart(text, keyNode.range[0]), end: lineEnd(text, valueNode.range[1]), text: '' });
    return;
  }
  const after = /^\s*,\s*/.exec(text.slice(valueNode.range[1]));
  if (after) {
    edits.push({ start: keyNode.range[0], end: valueNode.range[1] + after[0].length, text: '' });
    return;
  }
  const before = /,\s*$/.exec(text.slice(0, keyNode.range[0]));
  edits.push({ start: before ? keyNode.range[0] - before[0].length : keyNode.range[0], end: valueNode.range[1], text: '' });
}

function applyEdits(text: string, edits: readonly Edit[]): string {
  let out = text;
  for (const e of [...edits].sort((a, b) => b.start - a.start)) out = out.slice(0, e.start) + e.text + out.slice(e.end);
  return out;
}

/** Pure. Parses text that must be exactly one YAML document whose root is a block mapping. */
export function parseSingleMapping(text: string): Document.Parsed {
  const docs = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true });
  if (docs.length === 0) throw new FileContentError('the file is empty; expected a YAML mapping starting with `version: v1`');
  if (docs.length !== 1) throw new FileContentError(`the file holds ${docs.length} YAML documents; expected one`);
  const doc = docs[0]!;
  const error = doc.errors[0];
  if (error) {
    const line = error.linePos?.[0]?.line;
    throw new FileContentError(`YAML does not parse${line ? ` at line ${line}` : ''}: ${yamlErrorText(error.message)}`);
  }
  if (!isMap(doc.contents) || doc.contents.flow) {
    throw new FileContentError('the top level is not a block mapping of keys; expected a config starting with `version: v1`');
  }
  return doc;
}

function plainOrNull(text: string): unknown {
  try {
    return toPlain(parseSingleMapping(text).contents);
  } catch {
    return null;
  }
}

function toPlain(node: unknown): unknown {
  return node && typeof node === 'object' && 'toJSON' in node ? (node as { toJSON(): unknown }).toJSON() : node;
}

/** The file's own indentation step (the smallest indent of a nested line), else 2. */
export function detectIndent(text: string): number {
  let best = 0;
  for (const line of text.split(/\r?\n/)) {
    const m = /^( +)[^ #\r]/.exec(line);
    if (m && (best === 0 || m[1]!.length < best)) best = m[1]!.length;
  }
  return best >= 2 && best <= 8 ? best : 2;
}
