import { describe, expect, it } from 'vitest';
import { judgeLock, type LockInfo } from '../../src/rollout/lock.js';

const me: LockInfo = { runId: 'run-b', user: 'ops', host: 'laptop', pid: 200, startedAt: '2026-11-26T10:00:00Z', inventory: '/inv.yaml' };
const now = Date.parse('2026-11-26T12:00:00Z');
const hour = 3_600_000;
const alive = (pids: number[]) => (pid: number) => pids.includes(pid);

describe('judgeLock', () => {
  it.each([
    ['another live run on this host', { runId: 'run-a', host: 'laptop', pid: 100, startedAt: '2026-11-26T11:59:00Z' }, [100], 'live'],
    ['a run on this host whose process died', { runId: 'run-a', host: 'laptop', pid: 100, startedAt: '2026-11-26T11:59:00Z' }, [], 'gone'],
    ['this run, taken by a process that died (resume)', { runId: 'run-b', host: 'laptop', pid: 100, startedAt: '2026-11-26T11:00:00Z' }, [], 'mine'],
    ['this run id, but its process still runs', { runId: 'run-b', host: 'laptop', pid: 100, startedAt: '2026-11-26T11:00:00Z' }, [100], 'live'],
    ['another host, recent', { runId: 'run-a', host: 'bastion', pid: 100, startedAt: '2026-11-26T11:30:00Z' }, [], 'live'],
    ['another host, older than the setting', { runId: 'run-a', host: 'bastion', pid: 100, startedAt: '2026-11-26T10:30:00Z' }, [], 'stale'],
  ] as const)('%s', (_name, holder, pids, verdict) => {
    expect(judgeLock({ ...me, ...holder }, me, hour, now, alive([...pids]))).toBe(verdict);
  });
});
