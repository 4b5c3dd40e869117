// The MinKMS cluster as its own CLI reports it (`minkms stat --json`, run on a
// node with the SysAdmin key): who is a member, who is down, who leads. Writes
// need every node (write quorum N of N), so a member the inventory does not
// know, or one already down, means the next restart takes writes away.
import type { Plan } from '../plan/types.js';
import type { Transport } from '../transport/transport.js';
import { shellQuote } from '../util/shell-quote.js';
import { AGENT } from '../agent/scripts.js';
import type { ApiTarget } from './service-probe.js';

/** One member as the cluster reports it: `address` as HOST:PORT, lower case. */
export type ClusterMember = { id: string; address: string; up: boolean; leader: boolean };

/** The cluster as one node sees it. */
export type ClusterView = { members: ClusterMember[] };

/** What asking the cluster gave: its view, or why not (`auth`: the key was refused). */
export type ClusterAnswer = { ok: true; view: ClusterView } | { ok: false; problem: string; auth: boolean };

/** How rollout reaches the cluster's CLI on a node: the API key (never an argument) and the CLI's path. */
export type ClusterAccess = { apiKey: string; cli: string };

/** Pure. HOST:PORT lower case, port 7373 (MinKMS's default) when none is written. */
export function normalizeAddress(address: string): string {
  const a = address.trim().toLowerCase().replace(/^https:\/\//, '');
  return /:\d+$/.test(a) ? a : `${a}:7373`;
}

/**
 * Pure. `minkms stat --json`'s object (minio/kms-go's StatusResponse: `nodes_up`
 * by id with `address` and `state` Leader/Follower/Candidate, `nodes_down` by
 * id as addresses) as a view; a string says what was wrong with it.
 */
export function parseClusterStatus(lines: readonly string[]): ClusterView | string {
  const text = lines.find((l) => l.trimStart().startsWith('{'));
  if (text === undefined) return `no JSON in its answer (${JSON.stringify(lines.join(' ').slice(0, 160))})`;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return `its answer is not JSON (${JSON.stringify(text.slice(0, 160))})`;
  }
  const o = raw as { nodes_up?: unknown; nodes_down?: unknown };
  if (!o || typeof o !== 'object' || (o.nodes_up !== undefined && typeof o.nodes_up !== 'object') || (o.nodes_down !== undefined && typeof o.nodes_down !== 'object')) {
    return 'its answer has no nodes_up/nodes_down objects';
  }
  const members: ClusterMember[] = [];
  const upEntries = Object.entries((o.nodes_up ?? {}) as Record<string, { address?: unknown; state?: unknown; node_id?: unknown; leader_id?: unknown }>);
  for (const [id, n] of upEntries) {
    if (!n || typeof n.address !== 'string') return `member ${id} of nodes_up has no address`;
    const leader = (typeof n.state === 'string' && n.state.toLowerCase() === 'leader') || (n.node_id !== undefined && n.node_id === n.leader_id);
    members.push({ id, address: normalizeAddress(n.address), up: true, leader });
  }
  for (const [id, address] of Object.entries((o.nodes_down ?? {}) as Record<string, unknown>)) {
    if (typeof address !== 'string') return `member ${id} of nodes_down has no address`;
    members.push({ id, address: normalizeAddress(address), up: false, leader: false });
  }
  return { members };
}

/**
 * Pure. What is wrong between the cluster's view and the nodes rollout knows
 * (name -> API HOST:PORT): a node that is no member or is down, a member that is
 * down, and (when `complete`: the inventory is the whole cluster, no --limit) a
 * member no node of the inventory is. Empty: they agree and every member is up.
 */
export function membershipProblems(view: ClusterView, nodes: ReadonlyMap<string, string>, complete: boolean): string[] {
  const problems: string[] = [];
  const byAddress = new Map(view.members.map((m) => [m.address, m]));
  const known = new Set<string>();
  for (const [name, host] of nodes) {
    const address = normalizeAddress(host);
    known.add(address);
    const m = byAddress.get(address);
    if (!m) problems.push(`${name} (${address}) is not a member of the cluster`);
    else if (!m.up) problems.push(`${name} (${address}) is down (nodes_down)`);
  }
  for (const m of view.members) {
    if (known.has(m.address)) continue;
    if (!m.up) problems.push(`member ${m.address} is down (nodes_down)${complete ? ' and no node of the inventory is it' : ''}`);
    else if (complete) problems.push(`member ${m.address} is no node of the inventory`);
  }
  return problems;
}

/** Pure. The node (of `nodes`, name -> API HOST:PORT) the view names leader; null: none, or not one of them. */
export function leaderNode(view: ClusterView, nodes: ReadonlyMap<string, string>): string | null {
  const leader = view.members.find((m) => m.leader && m.up);
  if (!leader) return null;
  return [...nodes].find(([, host]) => normalizeAddress(host) === leader.address)?.[0] ?? null;
}

/** Pure. `names` in their order, the leader moved to the end (unchanged when it is not among them). */
export function leaderLast(names: readonly string[], leader: string | null): string[] {
  if (leader === null || !names.includes(leader)) return [...names];
  return [...names.filter((n) => n !== leader), leader];
}

/** Pure. The agent's answer (src/agent/cluster.sh): the CLI's exit code, its output lines, and a backup's sha256 and size. */
export function parseClusterOutput(stdout: string): { rc: number | null; lines: string[]; sha?: { sha256: string; bytes: number } } {
  const lines: string[] = [];
  let rc: number | null = null;
  let sha: { sha256: string; bytes: number } | undefined;
  for (const line of stdout.split('\n')) {
    if (line.startsWith('@out ')) lines.push(line.slice(5));
    else if (line === '@out') lines.push('');
    else if (/^@cluster \d+$/.test(line)) rc = Number(line.slice(9));
    else {
      const m = /^@sha ([0-9a-f]{64}) (\d+)$/.exec(line.trim());
      if (m) sha = { sha256: m[1]!, bytes: Number(m[2]) };
    }
  }
  return { rc, lines, ...(sha ? { sha } : {}) };
}

// The CLI's words when the key itself was refused (real MinKMS and the lab's: 401/403).
const REFUSED = /not authori[sz]ed|unauthori[sz]ed|invalid api key|api key|access denied|forbidden|permission denied|expired|\b40[13]\b/i;

/** Pure. A failed CLI run as one line for an operator, and whether it was the key that was refused. */
export function cliProblem(rc: number | null, lines: readonly string[]): { problem: string; auth: boolean } {
  const text = lines.map((l) => l.trim()).filter(Boolean).join(' ').replace(/^Error:\s*/i, '').slice(0, 300);
  if (rc === null) return { problem: 'no answer from the cluster check', auth: false };
  if (rc === 127) return { problem: text || 'the minkms CLI is not on the node', auth: false };
  return { problem: `exit ${rc}${text ? `: ${text}` : ''}`, auth: REFUSED.test(text) };
}

// One run of the agent's cluster verb; the key goes on stdin, as its first line, and a backup's path after it.
async function runCluster(t: Transport, args: string[], access: ClusterAccess, timeoutMs: number, file?: string) {
  const stdin = Buffer.from(`${access.apiKey}\n${file !== undefined ? `${file}\n` : ''}`);
  const r = await t.exec(`sh -c ${shellQuote(AGENT.cluster)} rollout-cluster ${args.map(shellQuote).join(' ')}`, { stdin, timeoutMs });
  return parseClusterOutput(r.stdout.toString('utf8'));
}

function cliArgs(what: 'stat' | 'backup', target: ApiTarget, access: ClusterAccess): string[] {
  return [what, target.host, target.ca ?? '', target.insecure ? '1' : '0', access.cli];
}

/** `minkms stat --json` on the node behind `t`, against its own API; a lost link or odd answer is a not-ok answer, never a throw. */
export async function askCluster(t: Transport, target: ApiTarget, access: ClusterAccess): Promise<ClusterAnswer> {
  try {
    const out = await runCluster(t, cliArgs('stat', target, access), access, 30_000);
    if (out.rc !== 0) return { ok: false, ...cliProblem(out.rc, out.lines) };
    const view = parseClusterStatus(out.lines);
    return typeof view === 'string' ? { ok: false, problem: `minkms stat: ${view}`, auth: false } : { ok: true, view };
  } catch (err) {
    return { ok: false, problem: `cannot be asked (${(err as Error).message.replace(`${t.name}: `, '')})`, auth: false };
  }
}

/** What `minkms backup` left: its path on the node, sha256 and size; or why there is none. */
export type BackupResult = { ok: true; path: string; sha256: string; bytes: number } | { ok: false; problem: string; auth: boolean };

/**
 * `minkms backup` into `file` on the node behind `t` (its directory made 0700
 * when missing, and refused unless root-only; the path never on a command line
 * of rollout's), then the file's sha256.
 */
export async function backupCluster(t: Transport, target: ApiTarget, access: ClusterAccess, file: string): Promise<BackupResult> {
  if (/[\n\r]/.test(file)) return { ok: false, problem: 'the backup path holds a line break', auth: false };
  try {
    const out = await runCluster(t, cliArgs('backup', target, access), access, 600_000, file);
    if (out.rc !== 0) return { ok: false, ...cliProblem(out.rc, out.lines) };
    if (!out.sha) return { ok: false, problem: `minkms backup exited 0 but left no file at ${file}`, auth: false };
    return { ok: true, path: file, ...out.sha };
  } catch (err) {
    return { ok: false, problem: `cannot be asked (${(err as Error).message.replace(`${t.name}: `, '')})`, auth: false };
  }
}

/** Pure. Per node of the plan with an API (see NodeApi): what its readiness checks ask, with the inventory's vars.cluster. */
export function apiTargets(plan: Plan): Map<string, { target: ApiTarget; timeoutSeconds?: number }> {
  const targets = new Map<string, { target: ApiTarget; timeoutSeconds?: number }>();
  for (const n of plan.nodes) {
    if (n.status !== 'ready' || !n.api) continue;
    const cluster = n.node.cluster;
    targets.set(n.node.name, {
      target: { host: n.api.host, ca: n.api.tlsCa, insecure: cluster?.insecure === true },
      ...(cluster?.readyTimeoutSeconds !== undefined ? { timeoutSeconds: cluster.readyTimeoutSeconds } : {}),
    });
  }
  return targets;
}

/** Pure. Each planned node's API address (name -> HOST:PORT), in plan order: what the cluster's members are matched to. */
export function apiHosts(plan: Plan): Map<string, string> {
  return new Map([...apiTargets(plan)].map(([name, { target }]) => [name, target.host]));
}

/** The cluster as seen from the first of `from` (node names, in order) that answers; the key refused ends the search. */
export async function consultCluster(
  from: readonly string[],
  transports: ReadonlyMap<string, Transport>,
  targets: ReadonlyMap<string, { target: ApiTarget }>,
  access: ClusterAccess,
): Promise<{ node: string | null; answer: ClusterAnswer }> {
  let last: { node: string | null; answer: ClusterAnswer } = { node: null, answer: { ok: false, problem: 'no node with a known KMS API to ask', auth: false } };
  for (const node of from) {
    const t = transports.get(node);
    const target = targets.get(node)?.target;
    if (!t || !target) continue;
    last = { node, answer: await askCluster(t, target, access) };
    if (last.answer.ok || last.answer.auth) break;
  }
  return last;
}
