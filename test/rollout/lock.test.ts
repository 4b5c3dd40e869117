import { describe, expect, it } from 'vitest';
import { judgeLock, parseLockTake, type LockInfo } from '../../src/rollout/lock.js';

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

describe('parseLockTake', () => {
  it('reads what taking the lock found, and nothing from a line that is not its answer', () => {
    expect(parseLockTake('@lock taken')).toEqual({ taken: true });
    expect(parseLockTake('@lock held {"runId":"run-a"}')).toEqual({ taken: false, holder: '{"runId":"run-a"}' });
    expect(parseLockTake('@lock held')).toEqual({ taken: false, holder: '' });
    expect(parseLockTake('sudo: a password is required')).toBeNull();
  });
});
