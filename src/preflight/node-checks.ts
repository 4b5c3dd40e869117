import path from 'node:path';
import type { FileChange, NodePlan } from '../plan/types.js';
import { octalMode, unsafeDirProblems } from '../plan/unsafe-dirs.js';
import { parseServiceState, SHOW_PROPERTIES, type ServiceState } from '../rollout/journal.js';
import { LOCK_FILE, type LockInfo } from '../rollout/lock.js';
import type { Transport } from '../transport/transport.js';
import { shellQuote } from '../util/shell-quote.js';
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
 * The node checks as a shell snippet that changes nothing: root (directly or
 * by `sudo -n`), the lock, the directories writable, the journal readable, the
 * unit's state, and (given a Vault server) the node's own path to Vault; with
 * `sums`, also the checksums of those files. Its output, between
 * `@checks-begin` and `@checks-end`, is read by parseNodeChecks. It runs in a
 * subshell: the caller's arguments are left alone.
 */
export function nodeCheckScript(target: NodeCheckTarget, sums: readonly string[] = []): string {
  const q = shellQuote;
  const vault = target.vaultServer ? vaultTarget(target.vaultServer) : null;
  // Each process costs a node 20-30 ms: shell builtins where they do, one sha256sum for all files.
  return [
    'echo @checks-begin; (',
    // The effective uid, from the shell's own status (no process).
    'while read -r k r e _; do [ "$k" != Uid: ] || { echo "@uid $e"; break; }; done < /proc/self/status',
    `l=; [ ! -r ${LOCK_FILE} ] || IFS= read -r l < ${LOCK_FILE} || true; echo "@lock $l"`,
    ...(sums.length > 0 ? [`echo @sums-begin; sha256sum -- ${sums.map(q).join(' ')} 2>/dev/null; echo @sums-end`] : []),
    ...target.dirs.map((d, i) => `test -w ${q(d)} && echo "@dir ${i} ok" || echo "@dir ${i} no"`),
    // A journal file journald writes (root reads any): what `journalctl` would read, without its 20 ms.
    'j=no; for f in /run/log/journal/*/*.journal /var/log/journal/*/*.journal; do [ ! -r "$f" ] || { j=ok; break; }; done; echo "@journal $j"',
    `echo @svc-begin; systemctl show -p ${SHOW_PROPERTIES} -- ${q(target.unit)}; echo @svc-end`,
    ...(vault ? [`set -- ${[vault.host, String(vault.port), vault.tls ? 'https' : 'http'].map(q).join(' ')}`, REACH_SCRIPT] : []),
    '); echo @checks-end',
  ].join('\n');
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

// Reports one machine-readable line: how far the node got towards Vault.
// curl proves TLS (with the node's own trust store, as the KMS will use it);
// without curl, bash's /dev/tcp proves TCP only; with neither, nothing can be said.
// curl asks the trust store's hashed directory first (--capath; --cacert names
// one certificate of that same store, else curl parses its whole default
// bundle too): OpenSSL then loads only the issuer it needs, about 35 ms less
// per node. Any failure the CA choice could cause is asked again the default
// way (the bundle), so a CA found only in the bundle still passes.
// curl is pinned to the addresses the system resolver gives (getent: /etc/hosts,
// then DNS), as the KMS resolves them; curl alone would treat some names
// (localhost) specially and could pass where the KMS would fail.
const REACH_SCRIPT = `h=$1; p=$2; scheme=$3
addrs=; prev=
for w in $(getent ahosts "$h" 2>/dev/null); do
  case $w in
    STREAM) a=$prev; case $a in *:*) a="[$a]";; esac
      case ",$addrs," in *",$a,"*) ;; *) addrs=\${addrs:+$addrs,}$a;; esac;;
  esac
  prev=$w
done
if [ -z "$addrs" ]; then echo "@reach resolve-failed"
elif command -v curl >/dev/null 2>&1; then
  reach() { out=$(curl -sS -o /dev/null --max-time 10 --resolve "$h:$p:$addrs" -w '%{http_code}' "$@" "$scheme://$h:$p/v1/sys/health" 2>&1) && rc=0 || rc=$?; }
  one=; for c in /etc/ssl/certs/*.0; do [ ! -r "$c" ] || { one=$c; break; }; done
  rc=1; [ "$scheme" != https ] || [ -z "$one" ] || reach --capath /etc/ssl/certs --cacert "$one"
  case $rc in 0|6|7|28) ;; *) reach;; esac
  code=\${out#"\${out%???}"}
  echo "@reach curl $rc $code \${out%???}"
elif command -v bash >/dev/null 2>&1; then
  if timeout 10 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$h" "$p" 2>/dev/null; then echo "@reach tcp-ok"; else echo "@reach tcp-failed"; fi
else
  echo "@reach no-tool"
fi`;

/** Pure. Turns REACH_SCRIPT's line into a check. */
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
