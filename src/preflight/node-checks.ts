import path from 'node:path';
import type { NodePlan } from '../plan/types.js';
import { parseServiceState } from '../rollout/journal.js';
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

/**
 * Checks one node can be changed safely, changing nothing, in one command:
 * root (directly or by `sudo -n`), the lock, the planned files unchanged and
 * their directories writable, the journal readable, the unit running now, and
 * (given a Vault server) the node's own path to Vault.
 */
export async function checkNode(t: Transport, plan: ReadyNode, unit: string, opts: { lockRunId: string | null; vaultServer?: string }): Promise<Check[]> {
  const changes = plan.phases.flatMap((p) => p.changes);
  const dirs = [...new Set(changes.map((c) => path.posix.dirname(c.path)))];
  const q = shellQuote;
  const vault = opts.vaultServer ? vaultTarget(opts.vaultServer) : null;
  const script = [
    'echo "@uid $(id -u)"',
    `echo "@lock $(cat -- ${LOCK_FILE} 2>/dev/null | tr -d '\\n')"`,
    ...changes.map((c, i) => `echo "@sha ${i} $(sha256sum < ${q(c.path)} 2>/dev/null | cut -d' ' -f1)"`),
    ...dirs.map((d, i) => `test -w ${q(d)} && echo "@dir ${i} ok" || echo "@dir ${i} no"`),
    'journalctl --no-pager -n 1 -o json >/dev/null 2>&1 && echo "@journal ok" || echo "@journal no"',
    `systemctl show -p ActiveState,SubState,NRestarts,InvocationID,MainPID -- ${q(unit)} | sed 's/^/@svc /'`,
    ...(vault ? [`echo "@reach $(sh -c ${q(REACH_SCRIPT)} rollout-reach ${[vault.host, String(vault.port), vault.tls ? 'https' : 'http'].map(q).join(' ')})"`] : []),
  ].join('\n');
  const fail = (name: string, detail: string): Check[] => [{ scope: t.name, name, status: 'fail', detail }];
  let out: string;
  try {
    const r = await t.exec(script, { timeoutMs: 60_000 });
    out = r.stdout.toString('utf8');
    if (!out.includes('@uid ')) return fail('root', `cannot run commands as root (${r.stderr.trim().split('\n').pop() || `exit ${r.code}`}); log in as root or give the user passwordless sudo`);
  } catch (err) {
    return fail('reachable', (err as Error).message.replace(`${t.name}: `, ''));
  }
  const lines = out.split('\n');
  const value = (tag: string) => lines.filter((l) => l.startsWith(`@${tag} `)).map((l) => l.slice(tag.length + 2));
  const checks: Check[] = [];
  const add = (name: string, ok: boolean, pass: string, failText: string) => checks.push({ scope: t.name, name, status: ok ? 'pass' : 'fail', detail: ok ? pass : failText });
  const uid = value('uid')[0];
  add('root', uid === '0', 'commands run as root', `commands run as uid ${uid}, not root; log in as root or give the user passwordless sudo`);
  if (uid !== '0') return checks;
  checks.push(lockCheck(t.name, value('lock')[0] ?? '', opts.lockRunId));
  if (changes.length > 0) {
    const shas = new Map(value('sha').map((v) => [Number(v.split(' ')[0]), v.split(' ')[1] ?? ''] as const));
    const stale = changes.filter((c, i) => shas.get(i) !== c.beforeSha256).map((c) => c.path);
    const unwritable = value('dir').filter((v) => v.endsWith(' no')).map((v) => dirs[Number(v.split(' ')[0])]);
    add(
      'files',
      stale.length === 0 && unwritable.length === 0,
      `${changes.length} file change(s) still match the plan; directories writable`,
      stale.length > 0
        ? `${stale.join(', ')} changed after the plan was made; run \`rollout plan\` again and review the new diff`
        : `cannot write in ${unwritable.join(', ')} (read-only file system?)`,
    );
  }
  add('journal', value('journal')[0] === 'ok', 'journal readable', 'journalctl cannot read the journal');
  const s = parseServiceState(value('svc').join('\n'));
  add('service', s.activeState === 'active' && s.subState === 'running', `${unit} is running`,
    `${unit} is not running now (${s.activeState}/${s.subState}, ${s.nRestarts} restarts); rollout only changes a healthy cluster: fix this node first`);
  if (vault && checks.every((c) => c.status !== 'fail')) checks.push(parseReach(t.name, vault.host, vault.port, vault.tls, value('reach')[0] ?? ''));
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
// curl is pinned to the addresses the system resolver gives (getent: /etc/hosts,
// then DNS), as the KMS resolves them; curl alone would treat some names
// (localhost) specially and could pass where the KMS would fail.
const REACH_SCRIPT = `h=$1; p=$2; scheme=$3
addrs=$(getent ahosts "$h" 2>/dev/null | awk '{ a = $1; if (index(a, ":")) a = "[" a "]"; if (!seen[a]++) printf "%s%s", (n++ ? "," : ""), a }')
if [ -z "$addrs" ]; then echo "resolve-failed"; exit 0; fi
if command -v curl >/dev/null 2>&1; then
  code=$(curl -sS -o /dev/null --max-time 10 --resolve "$h:$p:$addrs" -w '%{http_code}' "$scheme://$h:$p/v1/sys/health" 2>/tmp/.rollout-curl.$$); rc=$?
  err=$(head -c 300 /tmp/.rollout-curl.$$ | tr '\\n' ' '); rm -f /tmp/.rollout-curl.$$
  echo "curl $rc $code $err"
elif command -v bash >/dev/null 2>&1; then
  if timeout 10 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$h" "$p" 2>/dev/null; then echo "tcp-ok"; else echo "tcp-failed"; fi
else
  echo "no-tool"
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
