// Preflight's view of the MinKMS cluster (with vars.cluster.apiKey): every
// member up, members and inventory the same nodes, and who leads. Without the
// key, one `skip` line says what was not checked.
import { apiHosts, apiTargets, consultCluster, leaderNode, membershipProblems } from '../rollout/cluster.js';
import type { Check } from './check.js';
import type { PreflightInput } from './run-preflight.js';

/** In which order each phase restarts its nodes: the inventory's, or the current leader last. */
export type RestartOrder = 'inventory' | 'leader-last';

/** Pure. The order a run uses: what was asked, else leader-last when the cluster can be asked (an API key), else the inventory's. */
export function restartOrder(asked: RestartOrder | undefined, hasKey: boolean): RestartOrder {
  return asked ?? (hasKey ? 'leader-last' : 'inventory');
}

/**
 * The cluster checks: none for a playbook whose nodes have no KMS API; one
 * `skip` without the key; else `minkms stat --json` on the first node that answers;
 * fails when the key is refused, a member is down, or members and inventory
 * differ (only the selected nodes are compared under --limit); names the leader.
 */
export async function clusterChecks(input: PreflightInput, order: RestartOrder): Promise<Check[]> {
  const cluster = input.vars.cluster;
  // A playbook for another service has no KMS API on its nodes: nothing of a MinKMS cluster to check or skip.
  if (!cluster && apiHosts(input.plan).size === 0) return order === 'leader-last' ? [{ scope: 'cluster', name: 'order', status: 'fail', detail: '--order leader-last needs vars.cluster.apiKey and a MinKMS playbook; use --order inventory' }] : [];
  if (!cluster) {
    if (order === 'leader-last') return [{ scope: 'cluster', name: 'order', status: 'fail', detail: '--order leader-last needs vars.cluster.apiKey (the leader is learnt from `minkms stat`); set it, or use --order inventory' }];
    return [{ scope: 'cluster', name: 'membership', status: 'skip', detail: 'no vars.cluster.apiKey: membership, nodes-down and leader checks skipped; restarts follow the inventory order' }];
  }
  const cli = input.inventory.vars.cluster?.cli ?? '/usr/local/bin/minkms';
  const nodes = apiHosts(input.plan);
  const { node, answer } = await consultCluster([...nodes.keys()], input.transports, apiTargets(input.plan), { apiKey: cluster.apiKey, cli });
  if (!answer.ok) {
    const where = node ? ` on ${node}` : '';
    return [answer.auth
      ? { scope: 'cluster', name: 'api-key', status: 'fail', detail: `${cluster.keyRef} was refused by \`minkms stat\`${where} (${answer.problem}); give a SysAdmin API key that has not expired` }
      : { scope: 'cluster', name: 'status', status: 'fail', detail: `\`minkms stat\`${where} did not answer (${answer.problem}); the cluster's members cannot be checked` }];
  }
  const checks: Check[] = [];
  const problems = membershipProblems(answer.view, nodes, !input.inventory.limited);
  const up = answer.view.members.filter((m) => m.up).length;
  checks.push(problems.length === 0
    ? { scope: 'cluster', name: 'members', status: 'pass', detail: `${answer.view.members.length} members, all up, ${input.inventory.limited ? 'the selected nodes among them (--limit)' : 'the same nodes as the inventory'} (asked on ${node})` }
    : { scope: 'cluster', name: 'members', status: 'fail', detail: `${up} of ${answer.view.members.length} members up (asked on ${node}): ${problems.join('; ')}. Writes need every member: fix the cluster or the inventory first` });
  const leader = leaderNode(answer.view, nodes);
  const leaderAddress = answer.view.members.find((m) => m.leader && m.up)?.address;
  checks.push(
    leader
      ? { scope: 'cluster', name: 'leader', status: 'pass', detail: `${leader} leads${order === 'leader-last' ? '; it restarts last in each phase' : ' (--order inventory: restarts follow the inventory order)'}` }
      : { scope: 'cluster', name: 'leader', status: 'warn', detail: leaderAddress ? `the leader ${leaderAddress} is not a node of this run` : 'the cluster reports no leader' },
  );
  return checks;
}
