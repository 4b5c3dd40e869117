import path from 'node:path';
import { InputError, RolloutError } from '../errors.js';
import { limitNodes, loadInventory, type Inventory, type NodeTarget } from '../inventory/load.js';
import { resolveSecret, resolveVars, type ResolvedVars } from '../inventory/secrets.js';
import { loadPlaybook, varsProblems } from '../playbook/load.js';
import type { Playbook } from '../playbook/schema.js';
import { buildPlan, nodeFilePath, planNode, type PlanSource } from '../plan/build.js';
import { planSecrets } from '../plan/plan-secrets.js';
import { nodeHasChanges, type NodePlan, type Plan } from '../plan/types.js';
import type { Check } from '../preflight/check.js';
import type { NodeCheckTarget } from '../preflight/node-checks.js';
import { runNodeChecks, startVaultHealth, vaultChecks, type NodeCheckResult, type PreflightFlags, type PreflightInput } from '../preflight/run-preflight.js';
import { takeLock, type LockAttempt, type LockInfo } from '../rollout/lock.js';
import { connectSsh, createSshContext } from '../transport/ssh.js';
import type { Transport } from '../transport/transport.js';
import { mapLimit } from '../util/map-limit.js';
import type { VaultResponse } from '../vault/client.js';
import { createRedactor, type Redactor } from '../util/redact.js';
import { fingerprinter, loadFingerprintKey } from '../util/fingerprint.js';
import { nodeReader } from '../agent/files.js';

/** Everything `plan`, `preflight` and `apply` share: inputs validated, nodes connected and read, the plan (what preflight reads, and more). */
export type Session = PreflightInput & {
  transports: Map<string, Transport>;
  /** Host keys recorded by --accept-new-host-keys while connecting: the commands print them. */
  notes: string[];
  /** With `lock`: what takeLock found on each node that answered (lockFleet settles the rest). */
  lockAttempts: Map<string, LockAttempt>;
  /** With `lock`: each node's checks, run under the lock while it was read. */
  nodeChecks: Map<string, NodeCheckResult>;
  /** The operator's keyed fingerprint of a secret (util/fingerprint.ts), as the redactor shows it. */
  fingerprint: (value: string) => string;
  close(): void;
};

/** How a session is opened. Only `apply` takes the lock; tests connect to an in-memory fleet. */
export type SessionOptions = {
  parallel?: number;
  limit?: string;
  acceptNewHostKeys?: boolean;
  /** Take the fleet lock on each node before reading it, and run the node checks under it. */
  lock?: LockInfo;
  /** Told once a node is read and checked (it is idle from then on). */
  onRead?: (node: string, t: Transport, unit: string) => void;
  /** Start Vault's checks from here early: sys/health at the first connection, the rest (with `lock`) once they can. */
  vault?: { health: boolean; checks?: Pick<PreflightFlags, 'skipVaultChecks' | 'skipVaultLogin'> };
  connect?: (node: NodeTarget) => Promise<Transport>;
};

/** The validated inputs of a session, before any network. */
export type SessionInputs = { inventory: Inventory; playbook: Playbook; vars: ResolvedVars; parallel: number };

/**
 * Validates the inventory and playbook, keeps the nodes `limit` selects and
 * resolves secrets (the sudo password included). No network.
 */
export async function loadSessionInputs(inventoryFile: string, opts: Pick<SessionOptions, 'parallel' | 'limit' | 'acceptNewHostKeys'>): Promise<SessionInputs> {
  const loaded = limitNodes(await loadInventory(inventoryFile), opts.limit);
  const inventory = opts.acceptNewHostKeys ? { ...loaded, nodes: loaded.nodes.map((n) => ({ ...n, acceptNewHostKeys: true })) } : loaded;
  const playbook = await loadPlaybook(inventory.playbookFile);
  const vars = await resolveVars(inventory.vars, inventory.file);
  if (inventory.sudoPasswordRef !== undefined) {
    const password = await resolveSecret(inventory.sudoPasswordRef, 'ssh.sudoPassword', inventory.file);
    vars.secrets.push(password);
    inventory.nodes = inventory.nodes.map((n) => ({ ...n, sudoPassword: password }));
  }
  const unknownVars = varsProblems(playbook, vars.values);
  if (unknownVars.length > 0) throw new InputError(inventory.playbookFile, unknownVars);
  return { inventory, playbook, vars, parallel: opts.parallel ?? inventory.parallel };
}

// A promise with its resolver, for steps that wait on the others' progress.
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * Loads the inputs, then runs each node's chain on its own, at most `parallel`
 * nodes at once: connect, then (with `lock`) take its lock, then read and plan
 * it while its node checks run, so a node waits on no other. Nothing is
 * written anywhere but the lock.
 */
export async function openSession(inventoryFile: string, opts: SessionOptions = {}): Promise<Session> {
  const { inventory, playbook, vars, parallel } = await loadSessionInputs(inventoryFile, opts);
  const ssh = createSshContext();
  // Read (or made) while the nodes are connected to; awaited for the redactor.
  const fingerprintKey = loadFingerprintKey();
  fingerprintKey.catch(() => undefined);
  const connect = opts.connect ?? ((node: NodeTarget) => connectSsh(node, ssh));
  const unit = playbook.service.unit;
  // sys/health spends nothing: asked once the first connection settled, so its TLS set-up overlaps the others'.
  let vaultHealth: ReturnType<typeof startVaultHealth>;
  let healthAsked = !opts.vault?.health;
  const askHealth = () => {
    if (healthAsked) return;
    healthAsked = true;
    vaultHealth = startVaultHealth(inventory, vars);
  };

  // The rest of Vault's checks spend a SecretID use: only once this run holds every
  // node's lock and some node has a change. A JWT named by its path on the nodes is
  // read by runPreflight, from a node it planned.
  const flags = opts.vault?.checks;
  const canStartVault = opts.lock !== undefined && flags !== undefined && !(vars.values.vault?.kubernetes?.jwt.startsWith('/') && !flags.skipVaultChecks && !flags.skipVaultLogin);
  const locked = inventory.nodes.map(() => deferred<boolean>());
  const changed = deferred<boolean>();
  const early = Promise.all([Promise.all(locked.map((d) => d.promise)), changed.promise]).then(([taken, change]) => {
    if (!canStartVault || !change || !taken.every(Boolean)) return null;
    const checks = vaultChecks(inventory, vars, flags, vaultHealth ? { health: vaultHealth } : {});
    checks.catch(() => undefined); // awaited by runPreflight
    return { checks };
  });

  const opened = new Map<string, Transport>();
  const lockAttempts = new Map<string, LockAttempt>();
  const nodeChecks = new Map<string, NodeCheckResult>();
  const close = () => opened.forEach((t) => t.close());

  const chain = async (node: NodeTarget, i: number): Promise<NodePlan> => {
    let t: Transport;
    try {
      t = await connect(node);
      opened.set(node.name, t);
    } catch (err) {
      if (!(err instanceof RolloutError)) throw err;
      askHealth();
      locked[i]!.resolve(false);
      return planNode({ node, error: err.message.replace(`${node.name}: `, '') }, playbook, vars);
    }
    askHealth();
    const source: PlanSource = { node, reader: nodeReader(t) };
    if (!opts.lock) {
      locked[i]!.resolve(false);
      return planNode(source, playbook, vars);
    }
    // The lock before the first read: two runs must not even plan and preflight (and spend SecretID uses) at once.
    try {
      const attempt = await takeLock(t, opts.lock);
      lockAttempts.set(node.name, attempt);
      locked[i]!.resolve(attempt.taken);
    } catch (err) {
      locked[i]!.resolve(false);
      if (!(err instanceof RolloutError)) throw err;
      return { node, status: 'error', error: err.message.replace(`${node.name}: `, '') };
    }
    // The directories of the files the playbook names here (a path found later, in another file, is checked by preflight).
    const target: NodeCheckTarget = {
      dirs: [...new Set(Object.values(playbook.files).map((f) => path.posix.dirname(nodeFilePath(f, node))))],
      unit,
      ...(vars.values.vault ? { vaultServer: vars.values.vault.server } : {}),
    };
    const [planned, checked] = await Promise.all([planNode(source, playbook, vars), runNodeChecks(t, target)]);
    if (checked) nodeChecks.set(node.name, checked);
    opts.onRead?.(node.name, t, unit);
    if (nodeHasChanges(planned)) changed.resolve(true);
    return planned;
  };

  let nodes: NodePlan[];
  try {
    nodes = await mapLimit(inventory.nodes.map((n, i) => [n, i] as const), parallel, ([n, i]) => chain(n, i));
  } catch (err) {
    close();
    throw err;
  }
  changed.resolve(false);
  const started = await early;
  // Built once connected and read: a sudo password typed at the prompt is a secret
  // too, and so is every secret value the planned files hold (a line of one may show alone).
  const fingerprint = fingerprinter(await fingerprintKey);
  const redact = createRedactor({ secrets: [...vars.secrets, ...ssh.sudoPasswords, ...planSecrets(nodes, playbook)], ...playbook.secrets, fingerprint });
  // In inventory order, as every later step walks them.
  const transports = new Map(inventory.nodes.flatMap((n) => (opened.has(n.name) ? [[n.name, opened.get(n.name)!] as const] : [])));
  return {
    inventory, playbook, vars, redact, fingerprint, plan: buildPlan(playbook, vars, nodes), parallel, transports, notes: [...ssh.recordedHostKeys], lockAttempts, nodeChecks,
    ...(vaultHealth ? { vaultHealth } : {}),
    ...(started ? { vaultChecks: started.checks } : {}),
    close,
  };
}
