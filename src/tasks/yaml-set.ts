import { isDeepStrictEqual } from 'node:util';
import { Document, isMap, parseAllDocuments } from 'yaml';
import { FileContentError } from '../errors.js';
import { yamlErrorText } from '../util/yaml-location.js';

/** What setting a subtree would do to a YAML file. */
export type YamlSetResult =
  | { status: 'changed'; after: string }
  | { status: 'unchanged'; reason: string }
  /** The file already holds something at the path's top key that the plan did not expect. */
  | { status: 'conflict'; reason: string };

/**
 * Pure. Adds `value` at `path` by appending a new top-level block, leaving every
 * other byte of `before` as it is (comments, quoting, indentation, CRLF). It never
 * rewrites an existing block: equal is `unchanged`, anything else is `conflict`.
 * Throws FileContentError when `before` is not one YAML mapping document.
 */
export function setYamlPath(before: string, path: readonly string[], value: unknown): YamlSetResult {
  const top = path[0];
  if (top === undefined) throw new Error('setYamlPath needs a non-empty path');
  const doc = parseSingleMapping(before);
  const dotted = path.join('.');
  if (doc.has(top)) {
    const existing: unknown = doc.getIn(path) === undefined ? undefined : toPlain(doc.getIn(path));
    if (existing !== undefined && isDeepStrictEqual(existing, value)) {
      return { status: 'unchanged', reason: `${dotted} already holds the planned values` };
    }
    const keys = Object.keys((toPlain(doc.get(top)) ?? {}) as object);
    return {
      status: 'conflict',
      reason: existing === undefined
        ? `the file already has a \`${top}\` block (${keys.length ? `keys: ${keys.join(', ')}` : 'empty'}) and rollout does not rewrite one it did not write; remove it by hand or make it hold exactly the planned \`${dotted}\``
        : `\`${dotted}\` already exists with different values; rollout does not overwrite it: remove it by hand, or make the inventory match it`,
    };
  }
  const eol = before.includes('\r\n') ? '\r\n' : '\n';
  const nested = path.slice(1).reduceRight<unknown>((inner, key) => ({ [key]: inner }), value);
  const block = new Document({ [top]: nested }).toString({ indent: detectIndent(before), lineWidth: 0 });
  const prefix = before === '' || before.endsWith('\n') ? before : before + eol;
  const after = prefix + block.replace(/\n/g, eol);
  // Belt and braces: the result must hold the old document plus exactly the new key.
  const expected = { ...(toPlain(doc.contents) as object), [top]: nested };
  if (!isDeepStrictEqual(plainOrNull(after), expected)) {
    throw new FileContentError(`appending \`${top}\` would not produce the planned document (unusual structure at the end of the file, such as a \`...\` end marker); add the section by hand`);
  }
  return { status: 'changed', after };
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
