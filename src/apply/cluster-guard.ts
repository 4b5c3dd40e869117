// The cluster's say in a rollout (with vars.cluster.apiKey): each phase's order
// with the current leader last, so the cluster elects once per phase rather than
// after every restart; and after each gate, the restarted node back as a member
// with no member down before the next node goes down.
import { RolloutFailedError } from '../errors.js';
import type { Plan } from '../plan/types.js';
import { apiHosts, apiTargets, consultCluster, leaderLast, leaderNode, membershipProblems, type ClusterAccess } from '../rollout/cluster.js';
import type { Transport } from '../transport/transport.js';

/** What execute asks of the cluster: a phase's order, and after a node's gate what (if anything) is wrong. */
export type ClusterGuard = {
  /** `names` in the order this phase restarts them; throws RolloutFailedError when the leader cannot be learnt. */
  order(phase: string, names: readonly string[]): Promise<string[]>;
  /** Null when `node` is a member again and no member is down; else what is wrong, after waiting up to the guard's time. */
  afterGate(node: string): Promise<string | null>;
};

export type ClusterGuardOptions = {
  plan: Plan;
  transports: ReadonlyMap<string, Transport>;
  access: ClusterAccess;
  /** leader-last: ask who leads at each phase's start; inventory: keep the plan's order. */
  order: 'inventory' | 'leader-last';
  /** The inventory is the whole cluster (no --limit): a member it lacks is a problem. */
  complete: boolean;
  /** How long after a gate the cluster may take to show the node back. */
  timeoutSeconds: number;
  /** Told the leader at each phase's start (for the operator). */
  onLeader?: (phase: string, leader: string | null) => void;
  /** Waits between two questions after a gate (tests: at once). */
  pause?: (ms: number) => Promise<void>;
};

/** A guard asking the cluster through its CLI on the nodes (consultCluster). */
export function clusterGuard(opts: ClusterGuardOptions): ClusterGuard {
  const targets = apiTargets(opts.plan);
  const nodes = apiHosts(opts.plan);
  const all = [...nodes.keys()];
  const pause = opts.pause ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  return {
    async order(phase, names) {
      if (opts.order !== 'leader-last' || names.length <= 1) return [...names];
      const { node, answer } = await consultCluster(all, opts.transports, targets, opts.access);
      if (!answer.ok) {
        throw new RolloutFailedError(names[0]!, false,
          `not starting phase ${phase}: the cluster could not be asked who leads (${node ? `${node}: ` : ''}${answer.problem}); no node of this phase was touched. Check \`minkms stat\`, then \`rollout apply INVENTORY --resume\` (or --order inventory).`,
          'untouched: the cluster could not be asked (see below)');
      }
      const leader = leaderNode(answer.view, nodes);
      opts.onLeader?.(phase, leader);
      return leaderLast(names, leader);
    },
    async afterGate(node) {
      const deadline = Date.now() + opts.timeoutSeconds * 1000;
      for (;;) {
        // The restarted node first: its own view is the one that says it rejoined.
        const { node: asked, answer } = await consultCluster([node, ...all.filter((n) => n !== node)], opts.transports, targets, opts.access);
        const problems = answer.ok ? membershipProblems(answer.view, nodes, opts.complete) : [`the cluster could not be asked (${answer.problem})`];
        if (problems.length === 0) return null;
        if ((!answer.ok && answer.auth) || Date.now() >= deadline) return `after ${opts.timeoutSeconds} s the cluster${asked ? ` (asked on ${asked})` : ''} still says: ${problems.join('; ')}`;
        await pause(1000);
      }
    },
  };
}
