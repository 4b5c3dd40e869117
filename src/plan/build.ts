import { FileContentError, NodeError, RolloutError, UnreadableFileError } from '../errors.js';
import type { NodeTarget } from '../inventory/load.js';
import type { SecretFilesPolicy } from '../inventory/schema.js';
import type { ResolvedVars } from '../inventory/secrets.js';
import type { FileSpec, Playbook, TaskSpec } from '../playbook/schema.js';
import { findOption, readEnvValue, setEnvKey, unsetEnvKey } from '../tasks/env-file.js';
import { setYamlPath } from '../tasks/yaml-set.js';
import { parseDocument } from 'yaml';
import { sha256 } from '../util/sha256.js';
import { normalizeNodePath, workingDirectoryOf } from './node-path.js';
import type { FileChange, FileReader, NodeApi, NodePlan, NodeReader, PhasePlan, Plan, RemoteFile } from './types.js';
import { octalMode } from './unsafe-dirs.js';

/** A node to plan: how to read it, or why it cannot be read (no connection). */
export type PlanSource = { node: NodeTarget; reader: NodeReader } | { node: NodeTarget; error: string };

/** Pure. The phases of the playbook with whether each runs for these vars. */
export function planPhases(playbook: Playbook, vars: ResolvedVars): Plan['phases'] {
  return playbook.phases.map((p) => ({
    name: p.name,
    description: p.description ?? '',
    enabled: p.when === undefined || vars.values[p.when] === true,
    ...(p.when ? { when: p.when } : {}),
  }));
}

/**
 * The fleet's plan from each node's own (planNode, in inventory order): the
 * playbook's phases with whether each runs, and per node its changes or why it
 * cannot be planned. Pure: the reads happened in planNode.
 */
export function buildPlan(playbook: Playbook, vars: ResolvedVars, nodes: NodePlan[]): Plan {
  return { playbookName: playbook.name, phases: planPhases(playbook, vars), nodes };
}

/** Reads one node's files through its reader and computes its changes; never writes. Errors become an `error` node plan. */
export async function planNode(source: PlanSource, playbook: Playbook, vars: ResolvedVars): Promise<NodePlan> {
  const { node } = source;
  if ('error' in source) return { node, status: 'error', error: source.error };
  try {
    const { phases, api, paths } = await computeNode(source.reader.read, node, playbook, vars, { workingDirectory: source.reader.workingDirectory });
    return { node, status: 'ready', phases, paths, ...(api ? { api } : {}) };
  } catch (err) {
    if (err instanceof RolloutError || err instanceof FileContentError) {
      return { node, status: 'error', error: err instanceof NodeError ? err.message.slice(node.name.length + 2) : err.message };
    }
    throw err;
  }
}

/** Pure. Where a playbook file is on a node before any file is read: the node's override, else the playbook's path. */
export function nodeFilePath(spec: FileSpec, node: NodeTarget): string {
  return (spec.nodeOverride ? node[spec.nodeOverride] : undefined) ?? spec.path;
}

// `path`: the file's path as named, normalised (a symlink's own path); `from`:
// for a relative one, where it came from and what it was resolved against.
type WorkingFile = { path: string; read: RemoteFile | null; text: string | null; how: string; from?: string };


/** What planning may ask a node besides its files: each costs a command, asked only when needed. */
export type NodeQueries = {
  /** The unit's WorkingDirectory as `systemctl show` prints it (see readWorkingDirectory). */
  workingDirectory?: (unit: string) => Promise<string>;
};

/**
 * Computes one node's phases from its files: paths resolved (node override, then
 * the env file's option, then the default; normalised, a relative option value
 * against the unit's WorkingDirectory, a symlink to its target), each task
 * applied to the text the previous one left, and a secret-holding file's mode
 * decided by the inventory's secretFiles. Throws NodeError/FileContentError
 * when the node cannot be planned.
 */
export async function computePhases(readFile: FileReader, node: NodeTarget, playbook: Playbook, vars: ResolvedVars, queries: NodeQueries = {}): Promise<PhasePlan[]> {
  return (await computeNode(readFile, node, playbook, vars, queries)).phases;
}

/** As computePhases, plus where the node's own KMS API listens (NodeApi), read from the same files; no api when the playbook has no options file. */
export async function computeNode(readFile: FileReader, node: NodeTarget, playbook: Playbook, vars: ResolvedVars, queries: NodeQueries = {}): Promise<{ phases: PhasePlan[]; api: NodeApi | null; paths: Record<string, string> }> {
  const files = new Map<string, WorkingFile>();
  // Every path known up front is asked for at once (a batched reader makes that
  // one command): a node costs one round trip, not one per file (a path found in
  // another file, such as --config in the env file, is read when known, if it differs).
  const reads = new Map<string, ReturnType<FileReader>>();
  const readOnce = (path: string) => {
    let r = reads.get(path);
    if (!r) {
      r = readFile(path);
      reads.set(path, r);
    }
    return r;
  };
  for (const spec of Object.values(playbook.files)) {
    const known = normalizeNodePath(nodeFilePath(spec, node));
    if (known.ok) void readOnce(known.path).catch(() => undefined);
  }
  const unit = playbook.service.unit;
  // Resolves a playbook file to its path on this node and reads it once.
  const open = async (name: string): Promise<WorkingFile> => {
    const known = files.get(name);
    if (known) return known;
    const spec = playbook.files[name]!;
    const override = spec.nodeOverride ? node[spec.nodeOverride] : undefined;
    const fix = spec.nodeOverride ? `set nodes[].${spec.nodeOverride} in the inventory to the file's absolute path` : 'fix the path in the playbook';
    let named = spec.path;
    let how = 'the playbook default';
    // Only an option's value is the service's to interpret: relative to its WorkingDirectory.
    let relativeOk = false;
    if (override) {
      named = override;
      how = `nodes[].${spec.nodeOverride} in the inventory`;
    } else if (spec.fromEnv) {
      const source = await open(spec.fromEnv.file);
      const words = source.text === null ? null : readEnvValue(source.text, spec.fromEnv.key);
      const fromOption = words === null ? null : findOption(words, spec.fromEnv.option);
      if (fromOption) {
        named = fromOption;
        how = `${spec.fromEnv.option} in ${spec.fromEnv.key} of ${source.path}`;
        relativeOk = true;
      }
    }
    const refuse = (problem: string) => new NodeError(node.name, `${JSON.stringify(named)} (path from ${how}) ${problem}; ${fix}`);
    let from: string | undefined;
    let normal = normalizeNodePath(named);
    if (relativeOk && !named.startsWith('/')) {
      // Checked first as it stands (a `..`, a newline), then joined to the unit's WorkingDirectory.
      const relative = normalizeNodePath(`/${named}`);
      if (!relative.ok) throw refuse(relative.problem);
      if (!queries.workingDirectory) throw refuse(`is relative and ${unit}'s WorkingDirectory cannot be asked here`);
      const shown = await queries.workingDirectory(unit);
      const wd = workingDirectoryOf(shown);
      if (!wd.ok) throw refuse(`is relative, and ${unit}'s WorkingDirectory ${wd.problem}`);
      normal = normalizeNodePath(`${wd.path}${relative.path}`);
      how = `${how}, relative to ${unit}'s WorkingDirectory ${wd.path}${shown.trim() === '' ? ' (unset: systemd\'s default)' : ''}`;
      from = `${named} (${how})`;
    }
    if (!normal.ok) throw refuse(normal.problem);
    const path = normal.path;
    let read: RemoteFile | null;
    try {
      read = await readOnce(path);
    } catch (err) {
      if (err instanceof UnreadableFileError) throw new NodeError(node.name, `${err.path} ${err.reason} (path from ${how}); ${fix}`);
      throw err;
    }
    // A symlink's target as the node resolved it (readlink -f): canonical, else refused.
    const canonical = read?.target === undefined ? null : normalizeNodePath(read.target);
    if (canonical && !(canonical.ok && canonical.path === read?.target)) throw refuse(`leads to ${JSON.stringify(read?.target)}, which rollout cannot use`);
    const text = read === null ? null : decodeUtf8(read.content, read.target ?? path);
    const file: WorkingFile = { path, read, text, how, ...(from ? { from } : {}) };
    files.set(name, file);
    return file;
  };

  // Files that decide other files' paths are opened even if no task of an enabled phase edits them.
  for (const [name, spec] of Object.entries(playbook.files)) if (spec.fromEnv) await open(name);

  // The API's address and CA, from the files as read (before any task edits them).
  let api: NodeApi | null = null;
  const optionsFile = Object.entries(playbook.files).find(([, spec]) => spec.fromEnv);
  if (optionsFile) {
    const [name, spec] = optionsFile;
    const env = await open(spec.fromEnv!.file);
    const words = env.text === null ? null : readEnvValue(env.text, spec.fromEnv!.key);
    const hostOption = words === null ? null : findOption(words, '--host');
    const host = apiHost(hostOption ?? 'localhost');
    if (host === null) throw new NodeError(node.name, `--host ${JSON.stringify(hostOption)} in ${spec.fromEnv!.key} of ${env.path} is not HOST[:PORT]; fix it on the node`);
    const config = await open(name);
    let tlsCa = config.text === null ? null : configTlsCa(config.text);
    if (tlsCa !== null) {
      const refuse = (problem: string) => new NodeError(node.name, `tls.ca ${JSON.stringify(tlsCa)} in ${config.path} ${problem}; fix it in the config`);
      if (!tlsCa.startsWith('/')) {
        // The KMS reads a relative path from its working directory, as it does --config.
        const relative = normalizeNodePath(`/${tlsCa}`);
        if (!relative.ok) throw refuse(relative.problem);
        if (!queries.workingDirectory) throw refuse(`is relative and ${unit}'s WorkingDirectory cannot be asked here`);
        const wd = workingDirectoryOf(await queries.workingDirectory(unit));
        if (!wd.ok) throw refuse(`is relative, and ${unit}'s WorkingDirectory ${wd.problem}`);
        tlsCa = `${wd.path}${relative.path}`;
      }
      const normal = normalizeNodePath(tlsCa);
      if (!normal.ok) throw refuse(normal.problem);
      tlsCa = normal.path;
    }
    api = { host, tlsCa };
  }

  const phases: PhasePlan[] = [];
  for (const phase of playbook.phases) {
    if (phase.when !== undefined && vars.values[phase.when] !== true) continue;
    const startText = new Map<string, string>();
    const unchanged: string[] = [];
    let restartUnit: string | null = null;
    let restartRequested = false;
    for (const task of phase.tasks) {
      if (task.kind === 'service.restart') {
        restartRequested = true;
        restartUnit = task.unit ?? playbook.service.unit;
        continue;
      }
      const file = await open(task.file);
      if (file.text === null) {
        if (task.kind === 'env.unset') {
          unchanged.push(`${file.path} does not exist, so it holds no ${task.key}`);
          continue;
        }
        const override = playbook.files[task.file]!.nodeOverride;
        // rollout edits files, it does not create them: their owner and mode are the node's to decide.
        throw new NodeError(node.name, `${file.path} does not exist (path from ${file.how}); ${override ? `set nodes[].${override} if it lives elsewhere` : 'create it on the node, or fix the path in the playbook'}`);
      }
      if (!startText.has(task.file)) startText.set(task.file, file.text);
      const edited = applyTask(task, file.text, vars, file.path);
      if (edited.text === file.text) unchanged.push(`${file.path}: ${edited.reason}`);
      file.text = edited.text;
    }
    const changes: FileChange[] = [];
    for (const [name, before] of startText) {
      const file = files.get(name)!;
      if (file.text === before || file.read === null || file.text === null) continue;
      const { target, dirs } = file.read;
      const change = secretFileMode({
        kind: 'file',
        file: name,
        // A symlink stays: its target is the file backed up, staged beside and replaced.
        path: target ?? file.path,
        ...(target !== undefined ? { linkPath: file.path } : {}),
        ...(file.from ? { pathFrom: file.from } : {}),
        before,
        after: file.text,
        beforeSha256: sha256(before),
        afterSha256: sha256(file.text),
        uid: file.read.uid,
        gid: file.read.gid,
        mode: file.read.mode,
        ...(dirs ? { dirs } : {}),
      }, vars.secrets, node.secretFiles?.othersReadable ?? 'refuse');
      if ('refused' in change) throw new NodeError(node.name, change.refused);
      changes.push(change);
    }
    phases.push({
      name: phase.name,
      description: phase.description ?? '',
      changes,
      unchanged,
      restart: restartRequested && changes.length > 0 && restartUnit ? { kind: 'restart', unit: restartUnit } : null,
    });
  }
  // Where each file the plan read lives on this node (a symlink's target), by the playbook's name for it.
  const paths = Object.fromEntries([...files].flatMap(([name, f]) => (f.read ? [[name, f.read.target ?? f.path] as const] : [])));
  return { phases, api, paths };
}

/** Pure. `--host`'s value as HOST:PORT (port 7373 when none, as MinKMS defaults); null when it is not a host name or address. */
export function apiHost(value: string): string | null {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/.exec(value);
  if (!m || (m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > 65535))) return null;
  return `${m[1]}:${m[2] ?? '7373'}`;
}

/** Pure. The config's `tls.ca` when it is a non-empty string; null otherwise (or when the YAML does not parse: planning says so elsewhere). */
export function configTlsCa(text: string): string | null {
  try {
    const ca: unknown = parseDocument(text).getIn(['tls', 'ca']);
    return typeof ca === 'string' && ca.trim() !== '' ? ca.trim() : null;
  } catch {
    return null;
  }
}

/**
 * Pure. A change whose new content holds one of `secrets` in a file others
 * can read (mode o+r), as secretFiles.othersReadable says: `tighten` drops the
 * others' bits from its mode (owner and group kept: 0644 becomes 0640),
 * `allow` keeps the mode and marks the change (the plan warns), `refuse` says
 * why the node cannot be planned. Any other change is returned as it is.
 */
export function secretFileMode(c: FileChange, secrets: readonly string[], policy: SecretFilesPolicy['othersReadable']): FileChange | { refused: string } {
  if (!(c.mode & 0o004) || !secrets.some((s) => s !== '' && c.after.includes(s))) return c;
  if (policy === 'tighten') return { ...c, mode: c.mode & ~0o007, othersReadable: { policy, modeBefore: c.mode } };
  if (policy === 'allow') return { ...c, othersReadable: { policy, modeBefore: c.mode } };
  return {
    refused: `${c.path} is mode ${octalMode(c.mode)}, readable by every local user, and its new content holds a secret from the inventory; ` +
      `make it unreadable to others first (\`chmod o-rwx ${c.path}\` on the node), or set secretFiles.othersReadable in the inventory: ` +
      `tighten (rollout writes it mode ${octalMode(c.mode & ~0o007)}) or allow (it stays ${octalMode(c.mode)})`,
  };
}

/** Pure. One file task on text; `reason` says why nothing changed when the text is the same. */
function applyTask(task: Exclude<TaskSpec, { kind: 'service.restart' }>, text: string, vars: ResolvedVars, path: string): { text: string; reason: string } {
  if (task.kind === 'env.unset') {
    const { after, removed } = unsetEnvKey(text, task.key);
    return { text: after, reason: removed === 0 ? `no ${task.key} line` : '' };
  }
  if (task.kind === 'env.set') {
    let value: string;
    try {
      value = envValue(resolveValue(task.value, vars), task.value);
    } catch (err) {
      throw err instanceof FileContentError ? new FileContentError(`${path}: ${task.key}: ${err.message}`) : err;
    }
    const result = setEnvKey(text, task.key, value);
    if (result.status === 'refused') throw new FileContentError(`${path}: ${result.reason}`);
    return result.status === 'changed' ? { text: result.after, reason: result.reason } : { text, reason: result.reason };
  }
  const value = resolveValue(task.value, vars);
  try {
    const result = setYamlPath(text, task.path.split('.'), value, { exclusive: task.exclusive, exact: task.exact });
    if (result.status === 'changed') return { text: result.after, reason: '' };
    if (result.status === 'unchanged') return { text, reason: result.reason };
    throw new FileContentError(`${path}: ${result.reason}`);
  } catch (err) {
    if (err instanceof FileContentError && !err.message.startsWith(path)) throw new FileContentError(`${path}: ${err.message}`);
    throw err;
  }
}

/** Pure. An env.set value as the line gets it: a string as it is, a number or boolean var as YAML read it; anything else is refused. */
function envValue(value: unknown, spec: unknown): string {
  if (typeof value === 'string') return value;
  if ((typeof value === 'number' && Number.isFinite(value)) || typeof value === 'boolean') return String(value);
  const name = spec && typeof spec === 'object' && 'var' in spec ? `var "${(spec as { var: string }).var}"` : 'the value';
  throw new FileContentError(`${name} is ${Array.isArray(value) ? 'a list' : value === null ? 'null' : `a ${typeof value === 'object' ? 'mapping' : typeof value}`}; env.set writes one line: give a string, number or boolean`);
}

/** Pure. A task value: `{ var: NAME }` is looked up in the inventory's vars. */
export function resolveValue(value: unknown, vars: ResolvedVars): unknown {
  if (value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 1 && 'var' in value) {
    const name = (value as { var: string }).var;
    if (!(name in vars.values)) throw new FileContentError(`the playbook uses var "${name}", which the inventory does not define`);
    return vars.values[name];
  }
  return value;
}

function decodeUtf8(content: Buffer, path: string): string {
  const text = content.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(content)) throw new FileContentError(`${path} is not UTF-8 text; rollout edits text files only`);
  return text;
}
