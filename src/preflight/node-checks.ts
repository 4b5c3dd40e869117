import path from 'node:path';
import type { FileChange, NodePlan } from '../plan/types.js';
import { octalMode, unsafeDirProblems } from '../plan/unsafe-dirs.js';
import { parseServiceState, type ServiceState } from '../rollout/journal.js';
import { LOCK_FILE, type LockInfo } from '../rollout/lock.js';
import type { Transport } from '../transport/transport.js';
import { shellQuote } from '../util/shell-quote.js';
import { AGENT } from '../agent/scripts.js';
import type { Check } from './check.js';

type ReadyNode = Extract<NodePlan, { status: 'ready' }>;

/** Pure. The lock check from the lock file's text (empty: free). */
export function lockCheck(node: string, text: string, mine: string | null): Check {
  const c = (status: Check['status'], detail: string): Check => ({ scope: node, name: 'lock', status, detail });
  if (!text.trim()) return c('pass', 'no other rollout holds this node');
  let h: LockInfo;
  try {
    h = JSON.parse(text) as LockInfo;
  } catch {
    return c('fail', `${LOCK_FILE} is unreadable; remove it by hand if no rollout runs`);
  }
  if (h.runId === mine) return c('pass', 'held by this run');
  return c('fail', `locked by run ${h.runId} of ${h.user}@${h.host} (pid ${h.pid}, since ${h.startedAt})`);
}

/** What the node checks look at: the directories that must be writable, the unit, the node's path to Vault. */
export type NodeCheckTarget = { dirs: readonly string[]; unit: string; vaultServer?: string };

/**
 * The node checks as a shell snippet that changes nothing (src/agent/check.sh):
 * root (directly or by `sudo -n`), the lock, the directories writable, the
 * journal readable, the unit's state, and (given a Vault server) the node's
 * own path to Vault; with `sums`, also the checksums of those files. Its
 * output, between `@checks-begin` and `@checks-end`, is read by
 * parseNodeChecks. The caller's arguments are left alone.
 */
export function nodeCheckScript(target: NodeCheckTarget, sums: readonly string[] = []): string {
  const vault = target.vaultServer ? vaultTarget(target.vaultServer) : null;
  const args = [target.unit, vault?.host ?? '', vault ? String(vault.port) : '', vault ? (vault.tls ? 'https' : 'http') : '', String(target.dirs.length), ...target.dirs, ...sums];
  return `${AGENT.checks}node_checks ${args.map(shellQuote).join(' ')}`;
}

/** The directories a node's planned changes write in. */
export function changeDirs(plan: ReadyNode): string[] {
  return [...new Set(plan.phases.flatMap((p) => p.changes).map((c) => path.posix.dirname(c.path)))];
}

/**
 * Checks one node can be changed safely, changing nothing, in one command
 * (nodeCheckScript, with the planned files' checksums: unchanged since the plan).
 */
export async function checkNode(t: Transport, plan: ReadyNode, unit: string, opts: { lockRunId: string | null; vaultServer?: string }): Promise<Check[]> {
  const changes = plan.phases.flatMap((p) => p.changes);
  const target = { dirs: changeDirs(plan), unit, ...(opts.vaultServer ? { vaultServer: opts.vaultServer } : {}) };
  try {
    const r = await t.exec(nodeCheckScript(target, changes.map((c) => c.path)), { timeoutMs: 60_000 });
    return parseNodeChecks(t.name, r.stdout.toString('utf8'), plan, target, opts.lockRunId, r.stderr.trim().split('\n').pop() || `exit ${r.code}`);
  } catch (err) {
    return [{ scope: t.name, name: 'reachable', status: 'fail', detail: (err as Error).message.replace(`${t.name}: `, '') }];
  }
}

// The lines between `@TAG-begin` and `@TAG-end`; null when the block is missing.
function blockOf(lines: readonly string[], tag: string): string[] | null {
  const from = lines.indexOf(`@${tag}-begin`);
  const to = lines.indexOf(`@${tag}-end`, from);
  return from < 0 || to < 0 ? null : lines.slice(from + 1, to);
}

/** Pure. The unit's state nodeCheckScript's output holds; null when it holds none. */
export function checkedServiceState(out: string): ServiceState | null {
  const svc = blockOf(out.split('\n'), 'svc');
  return svc === null ? null : parseServiceState(svc.join('\n'));
}

/**
 * Pure. The checks from nodeCheckScript's output (the block is found in `out`).
 * The planned files must still match the plan where the output holds their
 * checksums; without (the checks ran in the command that read them, under the
 * lock) they are the plan's. `lockRunId`: the run that should hold the lock
 * (null: none may), or `settled`. `why` says why no block came (stderr).
 */
export function parseNodeChecks(node: string, out: string, plan: ReadyNode, target: NodeCheckTarget, lockRunId: string | null | 'settled', why = ''): Check[] {
  const changes = plan.phases.flatMap((p) => p.changes);
  const all = out.split('\n');
  const lines = all.slice(all.indexOf('@checks-begin') + 1, all.includes('@checks-end') ? all.lastIndexOf('@checks-end') : undefined);
  const fail = (name: string, detail: string): Check[] => [{ scope: node, name, status: 'fail', detail }];
  if (!all.includes('@checks-begin') || !lines.some((l) => l.startsWith('@uid '))) {
    return fail('root', `cannot run commands as root (${why}); log in as root or give the user passwordless sudo`);
  }
  const value = (tag: string) => lines.filter((l) => l.startsWith(`@${tag} `)).map((l) => l.slice(tag.length + 2));
  const checks: Check[] = [];
  const add = (name: string, ok: boolean, pass: string, failText: string) => checks.push({ scope: node, name, status: ok ? 'pass' : 'fail', detail: ok ? pass : failText });
  const uid = value('uid')[0];
  add('root', uid === '0', 'commands run as root', `commands run as uid ${uid}, not root; log in as root or give the user passwordless sudo`);
  if (uid !== '0') return checks;
  // `settled`: the lock was settled after this output (lockFleet: a stale one broken, a resumed run's taken over).
  checks.push(lockRunId === 'settled' ? { scope: node, name: 'lock', status: 'pass', detail: 'held by this run' } : lockCheck(node, value('lock')[0] ?? '', lockRunId));
  if (changes.length > 0) {
    // sha256sum prints "SUM  PATH" per file it could read, in argument order.
    const summed = blockOf(lines, 'sums');
    const sums = new Map((summed ?? []).map((l) => [l.slice(66), l.slice(0, 64)] as const));
    const stale = summed === null ? [] : changes.filter((c) => sums.get(c.path) !== c.beforeSha256).map((c) => c.path);
    const written = changeDirs(plan);
    const dirOk = new Map(value('dir').map((v) => [target.dirs[Number(v.split(' ')[0])], v.endsWith(' ok')] as const));
    const unwritable = written.filter((d) => dirOk.get(d) !== true);
    add(
      'files',
      stale.length === 0 && unwritable.length === 0,
      `${changes.length} file change(s) ${summed === null ? 'planned from files read under the lock' : 'still match the plan'}; directories writable`,
      stale.length > 0
        ? `${stale.join(', ')} changed after the plan was made; run \`rollout plan\` again and review the new diff`
        : `cannot write in ${unwritable.join(', ')} (read-only file system?)`,
    );
    checks.push(...fileSafetyChecks(node, changes));
  }
  add('journal', value('journal')[0] === 'ok', 'journal readable', 'no journal file on this node (is systemd-journald running, with Storage= not none?); the gate follows the restart in the journal');
  const s = parseServiceState((blockOf(lines, 'svc') ?? []).join('\n'));
  const unit = target.unit;
  add('service', s.activeState === 'active' && s.subState === 'running', `${unit} is running`,
    `${unit} is not running now (${s.activeState}/${s.subState}, ${s.nRestarts} restarts); rollout only changes a healthy cluster: fix this node first`);
  const vault = target.vaultServer ? vaultTarget(target.vaultServer) : null;
  if (vault && checks.every((c) => c.status !== 'fail')) {
    // The reach line comes last; curl's error text after it may span lines.
    const at = lines.findIndex((l) => l.startsWith('@reach '));
    const reach = at < 0 ? '' : [lines[at]!.slice(7), ...lines.slice(at + 1)].join(' ').trim();
    checks.push(parseReach(node, vault.host, vault.port, vault.tls, reach));
  }
  return checks;
}

/**
 * Pure. The checks on the planned files' surroundings, from what the plan read:
 * `directories` fails when a non-root user can write in a directory above a
 * file (or above the symlink it is reached by), naming it with its owner, mode
 * and the fix; `secret files` (only when secretFiles applied) passes for a
 * tightened mode and warns for an allowed one.
 */
export function fileSafetyChecks(node: string, changes: readonly FileChange[]): Check[] {
  const checks: Check[] = [];
  const unknown = changes.filter((c) => !c.dirs).map((c) => c.path);
  const unsafe = unsafeDirProblems(changes);
  checks.push(unsafe.length === 0 && unknown.length === 0
    ? { scope: node, name: 'directories', status: 'pass', detail: `only root can write in the directories above the ${changes.length} planned file(s)` }
    : { scope: node, name: 'directories', status: 'fail', detail: unsafe.length > 0 ? unsafe.join('; ') : `the owners of the directories above ${unknown.join(', ')} were not read; run \`rollout plan\` again` });
  const tightened = changes.filter((c) => c.othersReadable?.policy === 'tighten');
  const allowed = changes.filter((c) => c.othersReadable?.policy === 'allow');
  if (allowed.length > 0) {
    checks.push({ scope: node, name: 'secret files', status: 'warn', detail: `${allowed.map((c) => `${c.path} (mode ${octalMode(c.mode)})`).join(', ')} will hold a secret every local user can read (secretFiles.othersReadable: allow)` });
  } else if (tightened.length > 0) {
    checks.push({ scope: node, name: 'secret files', status: 'pass', detail: `${tightened.map((c) => `${c.path} mode ${octalMode(c.othersReadable!.modeBefore)} -> ${octalMode(c.mode)}`).join(', ')} (secretFiles.othersReadable: tighten)` });
  }
  return checks;
}

function vaultTarget(server: string): { host: string; port: number; tls: boolean } {
  const url = new URL(server);
  const tls = url.protocol === 'https:';
  return { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || (tls ? 443 : 80)), tls };
}

/** Pure. Turns the `@reach` line (reach_vault in src/agent/check.sh) into a check. */
export function parseReach(node: string, host: string, port: number, tls: boolean, line: string): Check {
  const name = 'reaches vault';
  const c = (status: Check['status'], detail: string): Check => ({ scope: node, name, status, detail });
  if (line === 'resolve-failed') return c('fail', `${host} does not resolve on this node; the KMS could not reach Vault at startup`);
  if (line === 'tcp-ok') return c('pass', `TCP to ${host}:${port} connects (no curl on the node, so TLS was not checked)`);
  if (line === 'tcp-failed') return c('fail', `no TCP connection to ${host}:${port} from this node (no curl to say more)`);
  if (line === 'no-tool') return c('warn', 'could not check: neither curl nor bash on the node');
  const m = /^curl (\d+) (\d{3}) ?(.*)$/.exec(line);
  if (!m) return c('fail', `unexpected answer from the reachability check: ${line.slice(0, 200)}`);
  const [, rc, http, err] = m;
  if (rc === '0') return c('pass', `${host} resolves and ${tls ? 'TLS to' : 'HTTP to'} ${host}:${port} works from this node (sys/health HTTP ${http})`);
  const reasons: Record<string, string> = {
    '6': `${host} does not resolve`,
    '7': `connection to ${host}:${port} refused or unreachable`,
    '28': `no answer from ${host}:${port} within 10 s`,
    '35': 'TLS handshake failed',
    '60': 'the TLS certificate is not trusted by the node (add the CA to its trust store)',
    '51': `the TLS certificate does not name ${host}`,
  };
  return c('fail', `from this node: ${reasons[rc!] ?? `curl exit ${rc}`}${err ? ` (${err.trim()})` : ''}`);
}
