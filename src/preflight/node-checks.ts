import path from 'node:path';
import { checkNotStale } from '../apply/apply-node.js';
import { RolloutError } from '../errors.js';
import type { NodePlan } from '../plan/types.js';
import { journalCursor, readServiceState } from '../rollout/journal.js';
import type { Transport } from '../transport/transport.js';
import { shellQuote } from '../util/shell-quote.js';
import { readLock } from '../rollout/lock.js';
import type { Check } from './check.js';

/** Whether another rollout holds the node's lock (`mine`: the run id that may hold it). */
export async function checkLock(t: Transport, mine: string | null): Promise<Check> {
  const c = (status: Check['status'], detail: string): Check => ({ scope: t.name, name: 'lock', status, detail });
  try {
    const h = await readLock(t);
    if (!h) return c('pass', 'no other rollout holds this node');
    if (h.runId === mine) return c('pass', 'held by this run');
    return c('fail', `locked by run ${h.runId} of ${h.user}@${h.host} (pid ${h.pid}, since ${h.startedAt})`);
  } catch (err) {
    return c('fail', (err as Error).message);
  }
}

type ReadyNode = Extract<NodePlan, { status: 'ready' }>;

/**
 * Checks one node can be changed safely, changing nothing: root (directly or by
 * `sudo -n`), the planned files unchanged and their directories writable, the
 * journal readable, and the unit running now.
 */
export async function checkNode(t: Transport, plan: ReadyNode, unit: string): Promise<Check[]> {
  const checks: Check[] = [];
  const attempt = async (name: string, check: () => Promise<string>) => {
    try {
      checks.push({ scope: t.name, name, status: 'pass', detail: await check() });
    } catch (err) {
      const detail = err instanceof RolloutError ? err.message.replace(`${t.name}: `, '') : String(err);
      checks.push({ scope: t.name, name, status: 'fail', detail });
    }
  };
  await attempt('root', async () => {
    const r = await t.exec('id -u', { timeoutMs: 30_000 });
    if (r.code === 0 && r.stdout.toString().trim() === '0') return 'commands run as root';
    throw new RolloutError(`cannot act as root (${r.stderr.trim().split('\n').pop() || `uid ${r.stdout.toString().trim()}`}); log in as root or give the user passwordless sudo`);
  });
  if (checks[0]?.status === 'fail') return checks;
  const changes = plan.phases.flatMap((p) => p.changes);
  if (changes.length > 0) {
    await attempt('files', async () => {
      await checkNotStale(t, changes);
      const dirs = [...new Set(changes.map((c) => path.posix.dirname(c.path)))];
      const r = await t.exec(dirs.map((d) => `test -w ${shellQuote(d)} || echo ${shellQuote(d)}`).join('; '), { timeoutMs: 30_000 });
      const bad = r.stdout.toString().trim();
      if (bad) throw new RolloutError(`cannot write in ${bad.split('\n').join(', ')} (read-only file system?)`);
      return `${changes.length} file change(s) still match the plan; directories writable`;
    });
  }
  await attempt('journal', async () => {
    await journalCursor(t);
    return 'journal readable';
  });
  await attempt('service', async () => {
    const s = await readServiceState(t, unit);
    if (s.activeState === 'active' && s.subState === 'running') return `${unit} is running`;
    throw new RolloutError(`${unit} is not running now (${s.activeState}/${s.subState}, ${s.nRestarts} restarts); rollout only changes a healthy cluster: fix this node first`);
  });
  return checks;
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

/** From the node itself (it must reach Vault at startup): the name resolves and TLS works. */
export async function checkVaultFromNode(t: Transport, server: string): Promise<Check> {
  const url = new URL(server);
  const tls = url.protocol === 'https:';
  const port = Number(url.port || (tls ? 443 : 80));
  const host = url.hostname.replace(/^\[|\]$/g, '');
  try {
    const args = [host, String(port), tls ? 'https' : 'http'].map(shellQuote).join(' ');
    const r = await t.exec(`sh -c ${shellQuote(REACH_SCRIPT)} rollout-reach ${args}`, { timeoutMs: 30_000 });
    return parseReach(t.name, host, port, tls, r.stdout.toString('utf8').trim().split('\n').pop() ?? '');
  } catch (err) {
    return { scope: t.name, name: 'reaches vault', status: 'fail', detail: (err as Error).message };
  }
}
