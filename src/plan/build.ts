import { NodeError, RolloutError } from '../errors.js';
import type { NodeTarget } from '../inventory/load.js';
import type { ResolvedVars } from '../inventory/secrets.js';
import type { FileSpec, Playbook, TaskSpec } from '../playbook/schema.js';
import { findOption, readEnvValue, unsetEnvKey } from '../tasks/env-file.js';
import { FileContentError } from '../tasks/file-content-error.js';
import { setYamlPath } from '../tasks/yaml-set.js';
import { batchedReader, type FirstRead, type RemoteFile } from '../transport/remote-files.js';
import { sha256 } from '../util/sha256.js';
import type { Transport } from '../transport/transport.js';
import type { FileChange, NodePlan, PhasePlan, Plan } from './types.js';

/** The node's connection, or why there is none. */
export type Connection = { node: NodeTarget; transport: Transport } | { node: NodeTarget; error: string };

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
 * Reads one node's files and computes its changes. Never writes, except the
 * fleet lock when `first` asks (apply: taken in the same command as the first
 * read, see batchedReader); errors become an `error` node plan.
 */
export async function planNode(connection: Connection, playbook: Playbook, vars: ResolvedVars, first?: FirstRead): Promise<NodePlan> {
  const { node } = connection;
  if ('error' in connection) return { node, status: 'error', error: connection.error };
  try {
    const read = batchedReader(connection.transport, first);
    return { node, status: 'ready', phases: await computePhases(read, node, playbook, vars) };
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

type WorkingFile = { path: string; read: RemoteFile | null; text: string | null; how: string };

/** Reads one file of a node (null: it does not exist). Planning can read, never write. */
export type FileReader = (path: string) => Promise<RemoteFile | null>;

/**
 * Computes one node's phases from its files: paths resolved (node override, then
 * the env file's option, then the default), each task applied to the text the
 * previous one left. Throws NodeError/FileContentError when the node cannot be planned.
 */
export async function computePhases(readFile: FileReader, node: NodeTarget, playbook: Playbook, vars: ResolvedVars): Promise<PhasePlan[]> {
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
  for (const spec of Object.values(playbook.files)) void readOnce(nodeFilePath(spec, node)).catch(() => undefined);
  // Resolves a playbook file to its path on this node and reads it once.
  const open = async (name: string): Promise<WorkingFile> => {
    const known = files.get(name);
    if (known) return known;
    const spec = playbook.files[name]!;
    const override = spec.nodeOverride ? node[spec.nodeOverride] : undefined;
    let path = spec.path;
    let how = 'the playbook default';
    if (override) {
      path = override;
      how = `nodes[].${spec.nodeOverride} in the inventory`;
    } else if (spec.fromEnv) {
      const source = await open(spec.fromEnv.file);
      const words = source.text === null ? null : readEnvValue(source.text, spec.fromEnv.key);
      const fromOption = words === null ? null : findOption(words, spec.fromEnv.option);
      if (fromOption) {
        path = fromOption;
        how = `${spec.fromEnv.option} in ${spec.fromEnv.key} of ${source.path}`;
      }
    }
    const read = await readOnce(path);
    const text = read === null ? null : decodeUtf8(read.content, path);
    const file = { path, read, text, how };
    files.set(name, file);
    return file;
  };

  // Files that decide other files' paths are opened even if no task of an enabled phase edits them.
  for (const [name, spec] of Object.entries(playbook.files)) if (spec.fromEnv) await open(name);

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
        throw new NodeError(node.name, `${file.path} does not exist (path from ${file.how}); set nodes[].${playbook.files[task.file]!.nodeOverride ?? 'configFile'} if it lives elsewhere`);
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
      changes.push({
        file: name,
        path: file.path,
        before,
        after: file.text,
        beforeSha256: sha256(before),
        afterSha256: sha256(file.text),
        uid: file.read.uid,
        gid: file.read.gid,
        mode: file.read.mode,
      });
    }
    phases.push({
      name: phase.name,
      description: phase.description ?? '',
      changes,
      unchanged,
      restartUnit: restartRequested && changes.length > 0 ? restartUnit : null,
    });
  }
  return phases;
}

/** Pure. One file task on text; `reason` says why nothing changed when the text is the same. */
function applyTask(task: Exclude<TaskSpec, { kind: 'service.restart' }>, text: string, vars: ResolvedVars, path: string): { text: string; reason: string } {
  if (task.kind === 'env.unset') {
    const { after, removed } = unsetEnvKey(text, task.key);
    return { text: after, reason: removed === 0 ? `no ${task.key} line` : '' };
  }
  const value = resolveValue(task.value, vars);
  try {
    const result = setYamlPath(text, task.path.split('.'), value);
    if (result.status === 'changed') return { text: result.after, reason: '' };
    if (result.status === 'unchanged') return { text, reason: result.reason };
    throw new FileContentError(`${path}: ${result.reason}`);
  } catch (err) {
    if (err instanceof FileContentError && !err.message.startsWith(path)) throw new FileContentError(`${path}: ${err.message}`);
    throw err;
  }
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
