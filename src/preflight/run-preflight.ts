import { readFile } from 'node:fs/promises';
import { InputError } from '../errors.js';
import { readRemoteFile } from '../agent/files.js';
import type { RemoteFile } from '../plan/types.js';
import { mapLimit } from '../util/map-limit.js';
import type { Check } from './check.js';
import { changeDirs, checkNode, nodeCheckScript, parseNodeChecks, type NodeCheckTarget } from './node-checks.js';
import { runVaultChecks } from './vault-checks.js';
import { clusterChecks, restartOrder, type RestartOrder } from './cluster-checks.js';
import type { Inventory } from '../inventory/load.js';
import type { ResolvedVars } from '../inventory/secrets.js';
import type { Playbook } from '../playbook/schema.js';
import type { Plan } from '../plan/types.js';
import type { Transport } from '../transport/transport.js';
import { shellQuote } from '../util/shell-quote.js';
import type { Redactor } from '../util/redact.js';
import { vaultCall, type VaultEndpoint, type VaultResponse } from '../vault/client.js';

export type PreflightFlags = {
  skipVaultChecks?: boolean;
  skipVaultLogin?: boolean;
  /** The run that holds the fleet lock (apply); preflight alone expects every node unlocked. */
  lockRunId?: string;
  /** --order: how each phase orders its restarts (default: leader-last with an API key). */
  order?: RestartOrder;
};

/** What preflight reads: the plan, the open connections, and the checks a session already started. */
export type PreflightInput = {
  inventory: Inventory;
  playbook: Playbook;
  vars: ResolvedVars;
  redact: Redactor;
  plan: Plan;
  /** How many nodes are worked on at once where order does not matter (--parallel, else the inventory's). */
  parallel: number;
  transports: ReadonlyMap<string, Transport>;
  /** Node checks already run under this run's lock (runNodeChecks), by node. */
  nodeChecks: ReadonlyMap<string, NodeCheckResult>;
  /** Vault's sys/health, asked from here while the nodes were connected. */
  vaultHealth?: Promise<VaultResponse>;
  /** The checks from here, started once every node was locked and a change exists. */
  vaultChecks?: Promise<Check[]>;
};

/** A node's checks as runNodeChecks ran them: what they looked at and their output. */
export type NodeCheckResult = { target: NodeCheckTarget; out: string };

/**
 * Runs the node checks (nodeCheckScript) on one node, changing nothing; null
 * when the command could not run (preflight then checks that node itself).
 */
export async function runNodeChecks(t: Transport, target: NodeCheckTarget): Promise<NodeCheckResult | null> {
  try {
    const r = await t.exec(`sh -c ${shellQuote(nodeCheckScript(target))} rollout-check`, { timeoutMs: 60_000 });
    const out = r.stdout.toString('utf8');
    return out.includes('@checks-end') ? { target, out } : null;
  } catch {
    return null;
  }
}

/**
 * Every check that can be made without changing anything: Vault from this machine
 * (unless skipped), the cluster through its CLI (with an API key), then on every
 * node its own readiness and its path to Vault.
 * Order is stable: Vault checks first, the cluster, then nodes in inventory order.
 */
export async function runPreflight(session: PreflightInput, flags: PreflightFlags): Promise<Check[]> {
  const vault = session.vars.values.vault;
  const ready = session.plan.nodes.filter((n) => n.status === 'ready');
  // The nodes check themselves while this machine checks Vault; apply's nodes
  // already did under the lock (unless a change writes in a directory they did not know).
  const perNode = mapLimit(ready, session.parallel, async (n) => {
    const t = session.transports.get(n.node.name)!;
    const done = session.nodeChecks.get(n.node.name);
    // This run took the lock before those checks, and lockFleet settled it since.
    if (done && changeDirs(n).every((d) => done.target.dirs.includes(d))) return parseNodeChecks(n.node.name, done.out, n, done.target, 'settled');
    return checkNode(t, n, session.playbook.service.unit, { lockRunId: flags.lockRunId ?? null, ...(vault ? { vaultServer: vault.server } : {}) });
  });
  perNode.catch(() => undefined);
  const cluster = clusterChecks(session, restartOrder(flags.order, session.vars.cluster !== undefined));
  cluster.catch(() => undefined);
  // Apply may have checked Vault already, while the nodes were still being read (see openSession).
  const checks = [...(await (session.vaultChecks ?? vaultChecks(session.inventory, session.vars, flags, {
    ...(session.vaultHealth ? { health: session.vaultHealth } : {}),
    jwtFile: (p) => {
      const first = ready[0];
      return first ? readRemoteFile(session.transports.get(first.node.name)!, p) : Promise.resolve(null);
    },
  })))];
  checks.push(...(await cluster), ...(await perNode).flat());
  return checks.map((c) => ({ ...c, detail: session.redact(c.detail) }));
}

/**
 * Asks Vault's sys/health from here at once (no token, spends nothing), so
 * that its first TLS connection (trust store, handshake) is made while the
 * nodes are being connected; runPreflight then uses this answer.
 * Undefined without a Vault section or when the CA file cannot be read (the
 * checks then report it as before).
 */
export function startVaultHealth(inventory: Inventory, vars: ResolvedVars): Promise<VaultResponse> | undefined {
  const vault = vars.values.vault;
  if (!vault) return undefined;
  const health = vaultEndpoint(inventory, vault.server).then((endpoint) => vaultCall(endpoint, 'GET', 'sys/health'));
  health.catch(() => undefined); // awaited (and reported) later, if at all
  return health;
}

// Where the checks from here go; throws InputError when the CA file cannot be read.
async function vaultEndpoint(inventory: Inventory, server: string): Promise<VaultEndpoint> {
  let ca: Buffer | undefined;
  if (inventory.vaultCaFile) {
    try {
      ca = await readFile(inventory.vaultCaFile);
    } catch (err) {
      throw new InputError(inventory.file, [`preflight.vaultCaFile: cannot read ${inventory.vaultCaFile} (${(err as NodeJS.ErrnoException).code})`]);
    }
  }
  return { server, timeoutMs: inventory.vaultTimeoutMs, ...(ca ? { ca } : {}) };
}

/**
 * The checks from this machine as runPreflight makes them (see runVaultChecks):
 * none without a Vault section, one `skip` with --skip-vault-checks. `health`:
 * sys/health asked earlier (startVaultHealth); `jwtFile` reads a Kubernetes JWT
 * that the section names by its path on the nodes (undefined: no node to read
 * it from yet; the login is then left to runPreflight). Throws InputError when
 * the CA file cannot be read.
 */
export async function vaultChecks(
  inventory: Inventory,
  vars: ResolvedVars,
  flags: Pick<PreflightFlags, 'skipVaultChecks' | 'skipVaultLogin'>,
  opts: { health?: Promise<VaultResponse>; jwtFile?: (path: string) => Promise<RemoteFile | null> },
): Promise<Check[]> {
  const vault = vars.values.vault;
  if (!vault) return [];
  if (flags.skipVaultChecks) {
    return [{ scope: 'vault', name: 'checks', status: 'skip', detail: '--skip-vault-checks: this machine did not contact Vault; each node still checks it can reach it' }];
  }
  const endpoint = await vaultEndpoint(inventory, vault.server);
  // A Kubernetes JWT given as a path lives on the nodes: read it from the first one.
  let jwtFromNode: string | undefined;
  if (vault.kubernetes?.jwt.startsWith('/') && opts.jwtFile && !flags.skipVaultLogin) {
    jwtFromNode = (await opts.jwtFile(vault.kubernetes.jwt))?.content.toString('utf8').trim();
  }
  return runVaultChecks(vault, {
    endpoint,
    skipLogin: flags.skipVaultLogin === true,
    ...(jwtFromNode ? { jwtFromNode } : {}),
    ...(opts.health ? { health: opts.health } : {}),
  });
}
