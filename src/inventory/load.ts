import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import SSHConfig from 'ssh-config';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputError, UsageError } from '../errors.js';
import type { JumpTarget, SshTarget } from '../transport/ssh.js';
import { parse as parseYaml } from 'yaml';
import { loadYamlFile } from '../util/validate-yaml.js';
import { playbookVars } from '../playbook/load.js';
import { parseLocated } from '../util/yaml-location.js';
import { InventorySchema, type ClusterSettings, type InventoryFile, type SecretFilesPolicy, type SecretRef, type Vars } from './schema.js';

/** One node as rollout will reach it: every SSH setting resolved, paths absolute, plus where its files are. */
export type NodeTarget = SshTarget & {
  envFile?: string;
  configFile?: string;
  groups: string[];
  /** The inventory's secretFiles (planning reads it per node); absent: `othersReadable: refuse`. */
  secretFiles?: SecretFilesPolicy;
  /** vars.cluster: how the readiness checks ask this node's own API (absent: TLS verified, the gate's time left). */
  cluster?: ClusterSettings;
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
  /** ssh.sudoPassword as written (a secret reference, resolved only when a session starts). */
  sudoPasswordRef?: SecretRef;
  /** What planning does with a file that will hold a secret while others can read it. */
  secretFiles: SecretFilesPolicy;
  /** true when --limit left out some of the file's nodes (the cluster then has members this run does not know). */
  limited?: boolean;
};

/** The playbook used when the inventory names none: the one shipped with rollout. */
export const DEFAULT_PLAYBOOK = fileURLToPath(new URL('../../playbooks/minkms-vault-hsm.yaml', import.meta.url));

/** Reads and validates an inventory file; throws InputError naming file, line and key. */
export async function loadInventory(file: string): Promise<Inventory> {
  const raw = await loadYamlFile(file, InventorySchema, 'inventory');
  const resolved = path.resolve(file);
  const configFile = raw.ssh.config === 'none' ? null : expandPath(raw.ssh.config, path.dirname(resolved));
  let sshConfig: SshConfigLookup = () => ({});
  if (configFile) {
    let text: string | null = null;
    try {
      text = await readFile(configFile, 'utf8');
    } catch (err) {
      // The default file may well not exist; one the inventory names must.
      if (raw.ssh.config !== '~/.ssh/config' || (err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new InputError(resolved, [`ssh.config: cannot read ${configFile} (${(err as NodeJS.ErrnoException).code}); fix the path or set it to none`]);
      }
    }
    if (text !== null) sshConfig = sshConfigLookup(text);
  }
  const inventory = resolveInventory(raw, resolved, sshConfig);
  const unknown = await unusedVarProblems(raw, resolved, inventory.playbookFile);
  if (unknown.length > 0) throw new InputError(resolved, unknown);
  return inventory;
}

/** Vars the schema knows (the shipped playbook's and rollout's own); any other must be one the playbook uses. */
const SCHEMA_VARS = new Set(['vault', 'disableLocalHsm', 'cluster']);

// A var of the playbook's own that the playbook never uses is most likely a
// misspelt one: it is refused as an unknown key, as the schema refuses others.
// A playbook that cannot be read is left to its own loading to report.
async function unusedVarProblems(raw: InventoryFile, file: string, playbookFile: string): Promise<string[]> {
  const own = Object.keys(raw.vars).filter((k) => !SCHEMA_VARS.has(k));
  if (own.length === 0) return [];
  let used: Set<string>;
  try {
    used = playbookVars(parseYaml(await readFile(playbookFile, 'utf8')));
  } catch {
    return [];
  }
  const unused = own.filter((k) => !used.has(k));
  if (unused.length === 0) return [];
  const { lineOf } = parseLocated(await readFile(file, 'utf8'));
  const uses = used.size > 0 ? `its vars: ${[...used].join(', ')}` : 'it uses none';
  return unused.map((k) => `line ${lineOf(['vars', k])}: vars.${k}: unknown key; the playbook ${path.basename(playbookFile)} uses no var "${k}" (${uses})`);
}


/** What ~/.ssh/config says for a Host alias (OpenSSH's first-match-wins, parsed by ssh-config). */
export type SshConfigLookup = (alias: string) => { HostName?: string; User?: string; Port?: string; IdentityFile?: string[]; ProxyJump?: string };

/** Pure. A lookup over an OpenSSH client config's text. */
export function sshConfigLookup(text: string): SshConfigLookup {
  const config = SSHConfig.parse(text);
  return (alias) => {
    const c = config.compute(alias) as Record<string, string | string[] | undefined>;
    const one = (k: string) => (Array.isArray(c[k]) ? (c[k] as string[])[0] : (c[k] as string | undefined));
    const ids = c.IdentityFile === undefined ? undefined : Array.isArray(c.IdentityFile) ? c.IdentityFile : [c.IdentityFile];
    return {
      ...(one('HostName') ? { HostName: one('HostName')! } : {}),
      ...(one('User') ? { User: one('User')! } : {}),
      ...(one('Port') ? { Port: one('Port')! } : {}),
      ...(ids ? { IdentityFile: ids } : {}),
      ...(one('ProxyJump') && one('ProxyJump') !== 'none' ? { ProxyJump: one('ProxyJump')! } : {}),
    };
  };
}

/**
 * Pure: applies defaults, ~/.ssh/config and per-node overrides, resolves `~`
 * and relative paths. Precedence, as OpenSSH's command line over its config:
 * the node's own keys, then the inventory's ssh section, then the ssh config
 * for the node's host (an alias), then the defaults (root, 22).
 */
export function resolveInventory(raw: InventoryFile, file: string, sshConfig: SshConfigLookup = () => ({})): Inventory {
  const dir = path.dirname(file);
  const local = (p: string) => expandPath(p, dir);
  const problems: string[] = [];
  const port = (v: string | undefined, where: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 65535) {
      problems.push(`${where}: Port ${v} in the ssh config is not a port number`);
      return undefined;
    }
    return n;
  };
  // A jump spec: `[user@]host[:port]`, the host possibly an alias of the ssh config; one hop.
  const jumpTarget = (spec: string, where: string): JumpTarget | undefined => {
    if (spec.includes(',')) {
      problems.push(`${where}: ProxyJump ${spec} is a chain; rollout goes through one jump host only`);
      return undefined;
    }
    const m = /^(?:([^@]+)@)?(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(spec.replace(/^ssh:\/\//, ''));
    if (!m) {
      problems.push(`${where}: ProxyJump ${spec} is not [user@]host[:port]`);
      return undefined;
    }
    const alias = m[2]!.replace(/^\[|\]$/g, '');
    const c = sshConfig(alias);
    const id = raw.ssh.identityFile ?? c.IdentityFile?.[0];
    return {
      spec,
      host: c.HostName ?? alias,
      port: m[3] ? Number(m[3]) : (port(c.Port, where) ?? raw.ssh.port ?? 22),
      user: m[1] ?? c.User ?? raw.ssh.user ?? 'root',
      ...(id ? { identityFile: local(id) } : {}),
    };
  };
  const nodes = raw.nodes.map((n, i): NodeTarget => {
    const c = sshConfig(n.host);
    const identityFile = n.identityFile ?? raw.ssh.identityFile ?? c.IdentityFile?.[0];
    const jumpSpec = n.proxyJump ?? raw.ssh.proxyJump ?? c.ProxyJump;
    const jump = jumpSpec ? jumpTarget(jumpSpec, n.proxyJump ? `nodes[${i}].proxyJump` : raw.ssh.proxyJump ? 'ssh.proxyJump' : `nodes[${i}] (${n.host} in ssh.config)`) : undefined;
    return {
      name: n.name ?? n.host,
      host: c.HostName ?? n.host,
      port: n.port ?? raw.ssh.port ?? port(c.Port, `nodes[${i}] (${n.host} in ssh.config)`) ?? 22,
      user: n.user ?? raw.ssh.user ?? c.User ?? 'root',
      ...(identityFile ? { identityFile: local(identityFile) } : {}),
      knownHosts: local(raw.ssh.knownHosts),
      connectTimeoutMs: raw.ssh.connectTimeoutSeconds * 1000,
      keepaliveMs: raw.ssh.keepaliveSeconds * 1000,
      ...(n.envFile ? { envFile: n.envFile } : {}),
      ...(n.configFile ? { configFile: n.configFile } : {}),
      groups: n.groups,
      ...(jump ? { jump } : {}),
      secretFiles: raw.secretFiles,
      ...(raw.vars.cluster ? { cluster: raw.vars.cluster } : {}),
    };
  });
  const seen = new Map<string, number>();
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
    ...(raw.ssh.sudoPassword !== undefined ? { sudoPasswordRef: raw.ssh.sudoPassword } : {}),
    secretFiles: raw.secretFiles,
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
  const nodes = inventory.nodes.filter((n) => terms.includes(n.name) || n.groups.some((g) => terms.includes(g)));
  return { ...inventory, nodes, ...(nodes.length < inventory.nodes.length ? { limited: true } : {}) };
}

/** `~/x` to the home directory, relative paths against `dir`. */
export function expandPath(p: string, dir: string): string {
  if (p === '~' || p.startsWith('~/')) return path.join(homedir(), p.slice(1));
  return path.resolve(dir, p);
}
