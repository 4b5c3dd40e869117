// The secret values a plan's files hold, parsed, for the redactor's literals:
// its key rules see a secret only beside its key, while a diff hunk, a journal
// line or an error message may show a line of it alone.
import { isAlias, isScalar, parseAllDocuments, visit, type Document, type Node as YamlNode, type Scalar } from 'yaml';
import type { Playbook } from '../playbook/schema.js';
import { envAssignments } from '../tasks/env-file.js';
import { isRedactedMarker } from '../util/redact.js';
import type { NodePlan } from './types.js';

// Shorter values are not collected: replaced wherever they stand alone, a `1`
// or an `on` would blank out line numbers and words all over the output, and
// they hide next to nothing. The key rules still redact them beside their key.
const MIN_LENGTH = 4;

/**
 * Pure. The secret values in the files of `nodes`' changes, before and after,
 * as written there: in YAML files every scalar under a key of the playbook's
 * `secrets.yamlKeys` (nested, aliased, and each line of a block or multi-line
 * scalar), in env files each line of an `envKeys` assignment and its whole
 * value. A file's format follows the playbook's tasks (a file it names for
 * neither is read as both).
 */
export function planSecrets(nodes: readonly NodePlan[], playbook: Playbook): string[] {
  const formats = fileFormats(playbook);
  const found = new Set<string>();
  for (const n of nodes) {
    if (n.status !== 'ready') continue;
    for (const c of n.phases.flatMap((p) => p.changes)) {
      const format = formats.get(c.file);
      for (const text of [c.before, c.after]) {
        if (format !== 'env') for (const v of yamlSecretValues(text, playbook.secrets.yamlKeys)) found.add(v);
        if (format !== 'yaml') for (const v of envSecretValues(text, playbook.secrets.envKeys)) found.add(v);
      }
    }
  }
  return [...found];
}

/** Pure. The secret values under `keys` in a YAML text (see planSecrets); of a text that does not parse, what its parse recovered. */
export function yamlSecretValues(text: string, keys: readonly string[]): string[] {
  const wanted = new Set(keys);
  const found = new Set<string>();
  if (wanted.size === 0) return [];
  let docs: Document[];
  try {
    docs = parseAllDocuments(text) as Document[];
  } catch {
    return [];
  }
  if (!Array.isArray(docs)) return [];
  for (const doc of docs) {
    const seen = new Set<YamlNode>();
    const under = (node: YamlNode | null | undefined) => {
      const target = isAlias(node) ? node.resolve(doc) : node;
      if (!target || seen.has(target)) return;
      seen.add(target);
      if (isScalar(target)) return addScalar(target, text, found);
      visit(target, {
        Scalar: (key, s) => (key === 'key' ? undefined : addScalar(s, text, found)),
        Alias: (_key, a) => under(a),
      });
    };
    visit(doc, {
      Pair: (_key, pair) => {
        if (isScalar(pair.key) && wanted.has(String(pair.key.value))) under(pair.value as YamlNode | null);
      },
    });
  }
  return [...found];
}

// A scalar's lines, parsed and as written (a folded one reads otherwise than it
// is written; a block scalar's first written line is its header).
function addScalar(s: Scalar, text: string, found: Set<string>): void {
  const lines = String(s.value ?? '').split(/\r?\n/);
  if (s.range) {
    const written = text.slice(s.range[0], s.range[1]).split(/\r?\n/);
    lines.push(...(s.type === 'BLOCK_FOLDED' || s.type === 'BLOCK_LITERAL' ? written.slice(1) : written));
  }
  for (const l of lines) add(l, found);
}

/** Pure. The values of `keys` in an env file: each whole value and each line as written. */
export function envSecretValues(text: string, keys: readonly string[]): string[] {
  const found = new Set<string>();
  for (const a of envAssignments(text)) {
    if (!keys.includes(a.key)) continue;
    add(a.value, found);
    for (const line of a.lines) {
      const written = line.trim().replace(/\\$/, '').trim();
      add(written, found);
      add(written.replace(/^["']|["']$/g, ''), found);
    }
  }
  return [...found];
}

function add(value: string, found: Set<string>): void {
  const v = value.trim();
  if (v.length >= MIN_LENGTH && !isRedactedMarker(v)) found.add(v);
}

// Which of the playbook's files are YAML and which env files, by the tasks on them.
function fileFormats(playbook: Playbook): Map<string, 'yaml' | 'env'> {
  const formats = new Map<string, 'yaml' | 'env'>();
  for (const f of Object.values(playbook.files)) if (f.fromEnv) formats.set(f.fromEnv.file, 'env');
  for (const t of playbook.phases.flatMap((p) => p.tasks)) {
    if (t.kind === 'yaml.set') formats.set(t.file, 'yaml');
    if (t.kind === 'env.unset') formats.set(t.file, 'env');
  }
  return formats;
}

/**
 * Pure. Which credentials a YAML file holds under `path` (a yaml.set task's
 * subtree): each scalar under a key of `keys`, as `SUBPATH:FP` with `fp` its
 * keyed fingerprint (`approle.secret:3f9a1c`), so nodes can be compared
 * without any secret shown. Empty when the path is absent or the text does
 * not parse.
 */
export function credentialFingerprints(text: string, path: readonly string[], keys: readonly string[], fp: (value: string) => string): string[] {
  let tree: unknown;
  try {
    const [doc] = parseAllDocuments(text);
    tree = doc && doc.errors.length === 0 ? doc.getIn(path) : undefined;
    tree = tree && typeof tree === 'object' && 'toJSON' in tree ? (tree as { toJSON(): unknown }).toJSON() : tree;
  } catch {
    return [];
  }
  const out: string[] = [];
  const walk = (v: unknown, at: string[]) => {
    if (!v || typeof v !== 'object') return;
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (keys.includes(k) && (typeof x === 'string' || typeof x === 'number')) out.push(`${[...at, k].join('.')}:${fp(String(x))}`);
      else walk(x, [...at, k]);
    }
  };
  walk(tree, []);
  return out;
}
