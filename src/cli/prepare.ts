import path from 'node:path';
import { InputError, RolloutError } from '../errors.js';
import { nodeCheckScript, type NodeCheckTarget } from '../preflight/node-checks.js';
import { startVaultHealth, vaultChecks, type PreflightFlags } from '../preflight/run-preflight.js';
import type { Check } from '../preflight/check.js';
import type { VaultResponse } from '../vault/client.js';
import { limitNodes, loadInventory, type Inventory } from '../inventory/load.js';
import { resolveSecret, resolveVars, type ResolvedVars } from '../inventory/secrets.js';
import { loadPlaybook, varsProblems } from '../playbook/load.js';
import type { Playbook } from '../playbook/schema.js';
import { nodeFilePath, planNode, planPhases, type Connection } from '../plan/build.js';
import { planSecrets } from '../plan/plan-secrets.js';
import { nodeHasChanges, type NodePlan, type Plan } from '../plan/types.js';
import { acceptedHostKeys, connectSsh, sudoSecrets } from '../transport/ssh.js';
import type { Transport } from '../transport/transport.js';
import type { LockAttempt, LockInfo } from '../rollout/lock.js';
import { mapLimit } from '../util/map-limit.js';
import { createRedactor, type Redactor } from '../util/redact.js';

/** Everything `plan` and `apply` share: inputs validated, nodes connected and read, the plan. */
export type Session = {
  inventory: Inventory;
  playbook: Playbook;
  vars: ResolvedVars;
  redact: Redactor;
  plan: Plan;
  /** How many nodes are worked on at once where order does not matter (--parallel, else the inventory's). */
  parallel: number;
  transports: Map<string, Transport>;
  /** Host keys recorded by --accept-new-host-keys while connecting: the commands print them. */
  notes: string[];
  /** With `survey`: what taking the lock found on each node read (lockFleet settles the rest). */
  lockAttempts: Map<string, LockAttempt>;
  /** With `survey`: each node's checks (nodeCheckScript), run in its first read under the lock. */
  nodeChecks: Map<string, { target: NodeCheckTarget; out: string }>;
  /** With `early.vaultHealth`: Vault's sys/health, asked from here while the nodes were connected. */
  vaultHealth?: Promise<VaultResponse>;
  /** With `early.vaultChecks`: the checks from here, made while the nodes were still being read (see prepareSession). */
  vaultChecks?: Promise<Check[]>;
  close(): void;
};

/**
 * Validates the inventory and playbook (no network until both pass), keeps the
 * nodes `limit` (--limit) selects, resolves
 * secrets, opens one SSH connection per node (at most `parallel` nodes at
 * once) and plans each node as soon as it is connected. Nothing is written
 * anywhere, except with `survey` (apply): each node's first read also tries
 * to take the fleet lock, then runs the preflight's node checks (see
 * lockAttempts, nodeChecks), in the same command; `onRead` is told when a
 * node's reads are done (the node is idle from then on). `early` starts
 * Vault's checks from here ahead of runPreflight: sys/health once the first
 * connection settled (it spends nothing), and with `survey` the rest (a login spends a SecretID use)
 * once this run holds every node's lock and a node's plan has a change to
 * make, while the other nodes are still being read (vaultHealth, vaultChecks).
 */
export async function prepareSession(
  inventoryFile: string,
  parallelFlag: number | undefined,
  limit?: string,
  acceptNewHostKeys = false,
  survey?: { lock: LockInfo; onRead?: (node: string, t: Transport, unit: string) => void },
  early?: { vaultHealth: boolean; vaultChecks?: Pick<PreflightFlags, 'skipVaultChecks' | 'skipVaultLogin'> },
): Promise<Session> {
  const loaded = limitNodes(await loadInventory(inventoryFile), limit);
  const inventory = acceptNewHostKeys ? { ...loaded, nodes: loaded.nodes.map((n) => ({ ...n, acceptNewHostKeys: true })) } : loaded;
  const playbook = await loadPlaybook(inventory.playbookFile);
  const vars = await resolveVars(inventory.vars, inventory.file);
  if (inventory.sudoPasswordRef !== undefined) {
    const password = await resolveSecret(inventory.sudoPasswordRef, 'ssh.sudoPassword', inventory.file);
    vars.secrets.push(password);
    inventory.nodes = inventory.nodes.map((n) => ({ ...n, sudoPassword: password }));
  }
  const unknownVars = varsProblems(playbook, vars.values);
  if (unknownVars.length > 0) throw new InputError(inventory.playbookFile, unknownVars);
  const parallel = parallelFlag ?? inventory.parallel;
  // Asked once the first connection settled: every connection of the first
  // batch is under way by then, and none waits on the TLS set-up (about 40 ms).
  let vaultHealth: Promise<VaultResponse> | undefined;
  let healthAsked = !early?.vaultHealth;
  const askHealth = () => {
    if (healthAsked) return;
    healthAsked = true;
    vaultHealth = startVaultHealth(inventory, vars);
  };
  // A JWT named by its path on the nodes is read by runPreflight, from a node it planned.
  const flags = early?.vaultChecks;
  const canStartVault = survey !== undefined && flags !== undefined && !(vars.values.vault?.kubernetes?.jwt.startsWith('/') && !flags.skipVaultChecks && !flags.skipVaultLogin);
  let locked = 0;
  let changes = false;
  let vaultChecksEarly: Promise<Check[]> | undefined;
  const startVaultChecks = () => {
    if (!canStartVault || vaultChecksEarly || !changes || locked < inventory.nodes.length) return;
    vaultChecksEarly = vaultChecks(inventory, vars, flags, vaultHealth ? { health: vaultHealth } : {});
    vaultChecksEarly.catch(() => undefined); // awaited by runPreflight
  };

  // Each node is read as soon as it is connected, while the others still shake hands.
  const opened = new Map<string, Transport>();
  const lockAttempts = new Map<string, LockAttempt>();
  const nodeChecks = new Map<string, { target: NodeCheckTarget; out: string }>();
  const close = () => opened.forEach((t) => t.close());
  let nodes: NodePlan[];
  try {
    nodes = await mapLimit(inventory.nodes, parallel, async (node) => {
      let connection: Connection;
      try {
        const transport = await connectSsh(node);
        opened.set(node.name, transport);
        connection = { node, transport };
      } catch (err) {
        if (!(err instanceof RolloutError)) throw err;
        connection = { node, error: err.message.replace(`${node.name}: `, '') };
      }
      askHealth();
      if (!survey || 'error' in connection) return planNode(connection, playbook, vars);
      // The directories of the files the playbook names for this node (a path found later, in another file, is checked apart).
      const target: NodeCheckTarget = {
        dirs: [...new Set(Object.values(playbook.files).map((f) => path.posix.dirname(nodeFilePath(f, node))))],
        unit: playbook.service.unit,
        ...(vars.values.vault ? { vaultServer: vars.values.vault.server } : {}),
      };
      const planned = await planNode(connection, playbook, vars, {
        lock: JSON.stringify(survey.lock),
        checks: nodeCheckScript(target),
        onLock: (a) => {
          if (!a.taken) return;
          locked += 1;
          startVaultChecks();
        },
        onFirst: (r) => {
          if (r.lock) lockAttempts.set(node.name, r.lock);
          if (r.checks !== null) nodeChecks.set(node.name, { target, out: r.checks });
        },
      });
      survey.onRead?.(node.name, connection.transport, playbook.service.unit);
      if (nodeHasChanges(planned)) {
        changes = true;
        startVaultChecks();
      }
      return planned;
    });
  } catch (err) {
    close();
    throw err;
  }
  // Built once connected and read: a sudo password typed at the prompt is a secret
  // too, and so is every secret value the planned files hold (a line of one may show alone).
  const redact = createRedactor({ secrets: [...vars.secrets, ...sudoSecrets, ...planSecrets(nodes, playbook)], ...playbook.secrets });
  // In inventory order, as every later step walks them.
  const transports = new Map(inventory.nodes.flatMap((n) => (opened.has(n.name) ? [[n.name, opened.get(n.name)!] as const] : [])));
  const plan: Plan = { playbookName: playbook.name, phases: planPhases(playbook, vars), nodes };
  return {
    inventory, playbook, vars, redact, plan, parallel, transports, notes: acceptedHostKeys.splice(0), lockAttempts, nodeChecks,
    ...(vaultHealth ? { vaultHealth } : {}),
    ...(vaultChecksEarly ? { vaultChecks: vaultChecksEarly } : {}),
    close,
  };
}
