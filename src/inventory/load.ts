import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputError, UsageError } from '../errors.js';
import { loadYamlFile } from '../util/validate-yaml.js';
import { InventorySchema, type InventoryFile, type Vars } from './schema.js';

/** One node as rollout will reach it: every SSH setting resolved, paths absolute. */
export type NodeTarget = {
  name: string;
  host: string;
  port: number;
  user: string;
  identityFile?: string;
  knownHosts: string;
  connectTimeoutMs: number;
  keepaliveMs: number;
  envFile?: string;
  configFile?: string;
  groups: string[];
};

/** A validated inventory with its nodes resolved; secrets are still references. */
export type Inventory = {
  file: string;
  nodes: NodeTarget[];
  vars: Vars;
  playbookFile: string;
  parallel: number;
  /** Absolute path of the CA bundle for rollout's own Vault checks, if set. */
  vaultCaFile?: string;
  vaultTimeoutMs: number;
  backupsKeep: number;
  lockStaleMs: number;
};

/** The playbook used when the inventory names none: the one shipped with rollout. */
export const DEFAULT_PLAYBOOK = fileURLToPath(new URL('../../playbooks/minkms-vault-hsm.yaml', import.meta.url));

/** Reads and validates an inventory file; throws InputError naming file, line and key. */
export async function loadInventory(file: string): Promise<Inventory> {
  const raw = await loadYamlFile(file, InventorySchema, 'inventory');
  return resolveInventory(raw, path.resolve(file));
}

/** Pure: applies defaults and per-node overrides, resolves `~` and relative paths. */
export function resolveInventory(raw: InventoryFile, file: string): Inventory {
  const dir = path.dirname(file);
  const local = (p: string) => expandPath(p, dir);
  const nodes = raw.nodes.map((n): NodeTarget => {
    const identityFile = n.identityFile ?? raw.ssh.identityFile;
    return {
      name: n.name ?? n.host,
      host: n.host,
      port: n.port ?? raw.ssh.port,
      user: n.user ?? raw.ssh.user,
      ...(identityFile ? { identityFile: local(identityFile) } : {}),
      knownHosts: local(raw.ssh.knownHosts),
      connectTimeoutMs: raw.ssh.connectTimeoutSeconds * 1000,
      keepaliveMs: raw.ssh.keepaliveSeconds * 1000,
      ...(n.envFile ? { envFile: n.envFile } : {}),
      ...(n.configFile ? { configFile: n.configFile } : {}),
      groups: n.groups,
    };
  });
  const seen = new Map<string, number>();
  const problems: string[] = [];
  nodes.forEach((n, i) => {
    const first = seen.get(n.name);
    if (first !== undefined) problems.push(`nodes[${i}]: node name "${n.name}" is already used by nodes[${first}]; give each node a unique \`name\``);
    else seen.set(n.name, i);
  });
  if (problems.length > 0) throw new InputError(file, problems);
  return {
    file,
    nodes,
    vars: raw.vars,
    playbookFile: raw.playbook ? local(raw.playbook) : DEFAULT_PLAYBOOK,
    parallel: raw.parallel,
    ...(raw.preflight.vaultCaFile ? { vaultCaFile: local(raw.preflight.vaultCaFile) } : {}),
    vaultTimeoutMs: raw.preflight.vaultTimeoutSeconds * 1000,
    backupsKeep: raw.backups.keep,
    lockStaleMs: raw.lock.staleMinutes * 60_000,
  };
}

/**
 * Pure. The nodes a `--limit` selects, in inventory order: a comma-separated
 * list of node names and group names. An unknown name is a UsageError listing
 * the names there are (a typo must not silently select nothing or everything).
 */
export function limitNodes(inventory: Inventory, limit: string | undefined): Inventory {
  if (limit === undefined) return inventory;
  const terms = limit.split(',').map((t) => t.trim()).filter(Boolean);
  if (terms.length === 0) throw new UsageError('--limit needs node or group names, e.g. --limit kms-1,kms-3');
  const groups = new Set(inventory.nodes.flatMap((n) => n.groups));
  const unknown = terms.filter((t) => !groups.has(t) && !inventory.nodes.some((n) => n.name === t));
  if (unknown.length > 0) {
    throw new UsageError(`--limit: no node or group named ${unknown.map((u) => `"${u}"`).join(', ')} in ${inventory.file} (nodes: ${inventory.nodes.map((n) => n.name).join(', ')}${groups.size ? `; groups: ${[...groups].join(', ')}` : ''})`);
  }
  return { ...inventory, nodes: inventory.nodes.filter((n) => terms.includes(n.name) || n.groups.some((g) => terms.includes(g))) };
}

/** `~/x` to the home directory, relative paths against `dir`. */
export function expandPath(p: string, dir: string): string {
  if (p === '~' || p.startsWith('~/')) return path.join(homedir(), p.slice(1));
  return path.resolve(dir, p);
}
