import { InputError, RolloutError } from '../errors.js';
import { limitNodes, loadInventory, type Inventory } from '../inventory/load.js';
import { resolveSecret, resolveVars, type ResolvedVars } from '../inventory/secrets.js';
import { loadPlaybook, varsProblems } from '../playbook/load.js';
import type { Playbook } from '../playbook/schema.js';
import { buildPlan, type Connection } from '../plan/build.js';
import type { Plan } from '../plan/types.js';
import { acceptedHostKeys, connectSsh, sudoSecrets } from '../transport/ssh.js';
import type { Transport } from '../transport/transport.js';
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
  close(): void;
};

/**
 * Validates the inventory and playbook (no network until both pass), keeps the
 * nodes `limit` (--limit) selects, resolves
 * secrets, opens one SSH connection per node (at most `parallel` handshakes at
 * once) and plans every node. Nothing is written anywhere.
 */
export async function prepareSession(inventoryFile: string, parallelFlag: number | undefined, limit?: string, acceptNewHostKeys = false): Promise<Session> {
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

  const connections = await mapLimit(inventory.nodes, parallel, async (node): Promise<Connection> => {
    try {
      return { node, transport: await connectSsh(node) };
    } catch (err) {
      if (err instanceof RolloutError) return { node, error: err.message.replace(`${node.name}: `, '') };
      throw err;
    }
  });
  // Built once connected: a sudo password typed at the prompt is a secret too.
  const redact = createRedactor({ secrets: [...vars.secrets, ...sudoSecrets], ...playbook.secrets });
  const transports = new Map(connections.flatMap((c) => ('transport' in c ? [[c.node.name, c.transport] as const] : [])));
  const close = () => transports.forEach((t) => t.close());
  try {
    const plan = await buildPlan(connections, playbook, vars, parallel);
    return { inventory, playbook, vars, redact, plan, parallel, transports, notes: acceptedHostKeys.splice(0), close };
  } catch (err) {
    close();
    throw err;
  }
}
