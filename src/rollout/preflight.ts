import path from 'node:path';
import { checkNotStale } from '../apply/apply-node.js';
import { RolloutError } from '../errors.js';
import type { NodePlan } from '../plan/types.js';
import type { Transport } from '../transport/transport.js';
import { shellQuote } from '../util/shell-quote.js';
import { journalCursor, readServiceState } from './journal.js';

/**
 * Checks one node can be changed safely, changing nothing: root (directly or by
 * `sudo -n`), the planned files unchanged and their directories writable, the
 * journal readable, and the unit running now. Returns the problems found.
 */
export async function preflightNode(t: Transport, plan: Extract<NodePlan, { status: 'ready' }>, unit: string): Promise<string[]> {
  const problems: string[] = [];
  const attempt = async (what: string, check: () => Promise<string | null>) => {
    try {
      const problem = await check();
      if (problem) problems.push(`${t.name}: ${problem}`);
    } catch (err) {
      problems.push(`${t.name}: ${what}: ${err instanceof RolloutError ? err.message.replace(`${t.name}: `, '') : String(err)}`);
    }
  };
  await attempt('privilege', async () => {
    const r = await t.exec('id -u', { timeoutMs: 30_000 });
    const uid = r.stdout.toString().trim();
    if (r.code === 0 && uid === '0') return null;
    return `cannot act as root (${r.stderr.trim().split('\n').pop() || `uid ${uid}`}); log in as root or give the user passwordless sudo`;
  });
  if (problems.length > 0) return problems;
  const changes = plan.phases.flatMap((p) => p.changes);
  await attempt('files', async () => {
    await checkNotStale(t, changes);
    return null;
  });
  const dirs = [...new Set(changes.map((c) => path.posix.dirname(c.path)))];
  if (dirs.length > 0) {
    await attempt('directories', async () => {
      const r = await t.exec(dirs.map((d) => `test -w ${shellQuote(d)} || echo ${shellQuote(d)}`).join('; '), { timeoutMs: 30_000 });
      const bad = r.stdout.toString().trim();
      return bad ? `cannot write in ${bad.split('\n').join(', ')} (read-only file system?)` : null;
    });
  }
  await attempt('journal', async () => {
    await journalCursor(t);
    return null;
  });
  await attempt('service', async () => {
    const s = await readServiceState(t, unit);
    if (s.activeState === 'active' && s.subState === 'running') return null;
    return `${unit} is not running now (${s.activeState}/${s.subState}, ${s.nRestarts} restarts); rollout only changes a healthy cluster: fix this node first`;
  });
  return problems;
}
