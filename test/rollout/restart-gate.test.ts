import { describe, expect, it } from 'vitest';
import { compileGate } from '../../src/rollout/gate.js';
import { openRestart, restartAndGate } from '../../src/rollout/restart-gate.js';
import { ConnectionLostError, StalePlanError } from '../../src/errors.js';
import { commitRequest, type StagedCommit } from '../../src/rollout/journal.js';
import { FakeTransport, showRunning } from '../helpers/fake-transport.js';

const gate = compileGate({ ready: '=> Server is up and running', failOn: ['^Error:'], timeoutSeconds: 5, restartTimeoutSeconds: 5 });
const redact = (s: string) => s;
const svc = (inv: string) => ['@svc-begin', 'ActiveState=active', 'SubState=running', 'NRestarts=0', `InvocationID=${inv}`, 'MainPID=1', '@svc-end'];
const entry = (message: string, inv: string, pid = '42') => JSON.stringify({ __CURSOR: `c-${message}`, __REALTIME_TIMESTAMP: '1', MESSAGE: message, _PID: pid, ...(pid === '1' ? { INVOCATION_ID: inv } : { _SYSTEMD_INVOCATION_ID: inv }) });

describe('restartAndGate over one channel', () => {
  it('passes on the new invocation\'s ready line and checks it is the one running', async () => {
    const t = new FakeTransport('kms-1', [[...svc('old'), '@cursor C1', '@restarted 0', '.', entry('Stopped minkms', 'old', '1'), entry('=> Server is up and running...', 'new')]], () => showRunning('new'));
    const run = await restartAndGate(t, 'minkms', gate, () => undefined, redact);
    expect(run.verdict.status).toBe('passed');
    expect(t.streams).toHaveLength(1);
    expect(t.streams[0]).toContain('rollout-restart');
  });

  it('fails when the process logging ready is no longer the running one', async () => {
    const t = new FakeTransport('kms-1', [[...svc('old'), '@cursor C1', '@restarted 0', entry('=> Server is up and running...', 'new')]], () => showRunning('newer'));
    const run = await restartAndGate(t, 'minkms', gate, () => undefined, redact);
    expect(run.verdict.status).toBe('failed');
    expect(run.verdict.reason).toContain('invocation newer');
  });

  it('a poll that ends after the ready line without the unit\'s state (the node\'s test missed it): the state is read apart, at once', async () => {
    // What a later poll would tell (another invocation by then) must not be waited for.
    const later = ['@now-begin', 'ActiveState=activating', 'SubState=auto-restart', 'NRestarts=1', 'InvocationID=later', 'MainPID=0', '@now-end'];
    const t = new FakeTransport('kms-1', [[...svc('old'), '@cursor C1', '@restarted 0', '.', entry('=> Server is up and running...', 'new'), '.', entry('Stopped minkms', 'new', '1'), ...later]], () => showRunning('new'));
    const run = await restartAndGate(t, 'minkms', gate, () => undefined, redact);
    expect(run.verdict.status).toBe('passed');
    expect(run.state?.invocationId).toBe('new');
    expect(t.execs).toEqual([expect.stringMatching(/^systemctl show /)]);
  });

  it('the unit\'s state printed right after the ready line\'s batch (@now) decides: no command apart', async () => {
    const now = ['@now-begin', 'ActiveState=active', 'SubState=running', 'NRestarts=0', 'InvocationID=new', 'MainPID=42', '@now-end'];
    const t = new FakeTransport('kms-1', [[...svc('old'), '@cursor C1', '@restarted 0', entry('=> Server is up and running...', 'new', '42'), ...now]], () => showRunning('other'));
    const run = await restartAndGate(t, 'minkms', gate, () => undefined, redact);
    expect(run.verdict.status).toBe('passed');
    expect(run.verdict.reason).toContain('systemd reported the unit active/running in that invocation');
    expect(run.state).toEqual({ activeState: 'active', subState: 'running', nRestarts: 0, invocationId: 'new', mainPid: 42 });
    expect(t.execs).toEqual([]);
  });

  it('reports a restart that timed out', async () => {
    const t = new FakeTransport('kms-1', [[...svc('old'), '@cursor C1', '@restarted 124']], () => showRunning('old'));
    const run = await restartAndGate(t, 'minkms', gate, () => undefined, redact);
    expect(run.verdict.reason).toContain('did not return within 5 s');
  });

  it('a link lost before the restart answered: asks the node, and restarts again only if it did not happen', async () => {
    const t = new FakeTransport('kms-1', [
      [...svc('old'), '@cursor C1'],
      [...svc('old'), '@cursor C2', '@restarted 0', entry('=> Server is up and running...', 'new')],
    ], () => showRunning('old'));
    const run = await restartAndGate(t, 'minkms', gate, () => undefined, redact);
    expect(t.streams.map((s) => (s.includes('rollout-restart') ? 'restart' : 'follow'))).toEqual(['restart', 'restart']);
    expect(t.execs.some((c) => c.startsWith('systemctl show'))).toBe(true);
    expect(run.verdict.status).toBe('failed'); // the final check sees invocation "old" still running
  });

  it('a link lost after the restart: the restart is not repeated, the journal is read again from the same cursor', async () => {
    const t = new FakeTransport('kms-1', [
      [...svc('old'), '@cursor C1', '@restarted 0', entry('Started minkms', 'new', '1')],
      [entry('Started minkms', 'new', '1'), entry('=> Server is up and running...', 'new')],
    ], () => showRunning('new'));
    const run = await restartAndGate(t, 'minkms', gate, () => undefined, redact);
    expect(t.streams.map((s) => (s.includes('rollout-restart') ? 'restart' : 'follow'))).toEqual(['restart', 'follow']);
    expect(t.streams[1]).toMatch(/rollout-follow minkms C1 '=> Server is up and running' 61,62,32,83,101,114,118,101,114,32,105,115,32,117,112,32,97,110,100,32,114,117,110,110,105,110,103$/);
    expect(run.verdict.status).toBe('passed');
  });

  const commit: StagedCommit = { path: '/etc/minkms/config.yaml', staged: '/etc/minkms/.rollout-staged.R.config.yaml', beforeSha256: 'a'.repeat(64), afterSha256: 'b'.repeat(64), uid: 0, gid: 0, mode: 0o640 };
  const now = (inv: string) => ['@now-begin', 'ActiveState=active', 'SubState=running', 'NRestarts=0', `InvocationID=${inv}`, 'MainPID=2', '@now-end'];

  it('a channel opened ahead is pinged while the health check runs; once it answers, go goes on it and its earlier lines still count', async () => {
    const t = new FakeTransport('kms-2', [[...svc('old'), '@cursor C1', '@pong', '@file /etc/minkms/config.yaml', '@committed', '@restarted 0', entry('=> Server is up and running...', 'old'), entry('=> Server is up and running...', 'new'), ...now('new')]], () => {
      throw new Error('no command may be needed');
    });
    const channel = openRestart(t, 'minkms', gate, [commit], 60_000);
    const run = await restartAndGate(t, 'minkms', gate, () => undefined, redact, { commits: [commit], channel, beforeGo: async () => undefined });
    expect(t.streams).toHaveLength(1);
    expect(t.sent[0]).toEqual([commitRequest([commit]), 'ping\n', 'go\n']);
    // @svc came before the pong: the old invocation's ready line does not count, the new one's does.
    expect(run.verdict.status).toBe('passed');
    expect(run.verdict.evidence[0]?.invocationId).toBe('new');
  });

  it('a channel pinged with the other nodes\' check (fresh): the turn sends no ping of its own, and go follows that pong', async () => {
    const t = new FakeTransport('kms-2', [[...svc('old'), '@cursor C1', '@pong', '@file /etc/minkms/config.yaml', '@committed', '@restarted 0', entry('=> Server is up and running...', 'new'), ...now('new')]], () => {
      throw new Error('no command may be needed');
    });
    const channel = openRestart(t, 'minkms', gate, [commit], 60_000);
    channel.send('ping\n');
    const run = await restartAndGate(t, 'minkms', gate, () => undefined, redact, { commits: [commit], channel, pings: { sent: 1, fresh: true }, beforeGo: async () => undefined });
    expect(t.sent[0]).toEqual([commitRequest([commit]), 'ping\n', 'go\n']);
    expect(run.verdict.status).toBe('passed');
  });

  it('a ping sent ahead that is no longer fresh: the turn pings again, and without that second pong go never goes on the channel', async () => {
    const t = new FakeTransport('kms-2', [
      [...svc('old'), '@cursor C1', '@pong'],
      ['@file /etc/minkms/config.yaml', '@committed', ...svc('old'), '@cursor C2', '@restarted 0', entry('=> Server is up and running...', 'new'), ...now('new')],
    ], () => {
      throw new Error('no command may be needed');
    });
    const channel = openRestart(t, 'minkms', gate, [commit], 60_000);
    channel.send('ping\n');
    const run = await restartAndGate(t, 'minkms', gate, () => undefined, redact, { commits: [commit], channel, pings: { sent: 1, fresh: false }, beforeGo: async () => undefined });
    // The first pong answered the old ping; the channel ended before answering the new one.
    expect(t.sent).toEqual([[commitRequest([commit]), 'ping\n', 'ping\n'], [commitRequest([commit]), 'go\n']]);
    expect(run.verdict.status).toBe('passed');
  });

  it('a channel opened ahead that ended before go (its link lost while it waited) is replaced by a fresh one: nothing was touched', async () => {
    const t = new FakeTransport('kms-2', [
      [...svc('old'), '@cursor C1'],
      ['@file /etc/minkms/config.yaml', '@committed', ...svc('old'), '@cursor C2', '@restarted 0', entry('=> Server is up and running...', 'new'), ...now('new')],
    ], () => {
      throw new Error('no command may be needed');
    });
    const channel = openRestart(t, 'minkms', gate, [commit], 60_000);
    const run = await restartAndGate(t, 'minkms', gate, () => undefined, redact, { commits: [commit], channel, beforeGo: async () => undefined });
    expect(t.streams).toHaveLength(2);
    expect(t.sent).toEqual([[commitRequest([commit]), 'ping\n'], [commitRequest([commit]), 'go\n']]);
    expect(run.verdict.status).toBe('passed');
  });

  it('sends go only after beforeGo resolved, records the commit, and judges the ready line by the state the node read right after it', async () => {
    const order: string[] = [];
    const t = new FakeTransport('kms-1', [['@file /etc/minkms/config.yaml', '@committed', ...svc('old'), '@cursor C1', '@restarted 0', entry('=> Server is up and running...', 'new'), ...now('new')]], () => {
      throw new Error('no command may be needed');
    });
    const run = await restartAndGate(t, 'minkms', gate, () => undefined, redact, {
      commits: [commit],
      beforeGo: async () => {
        order.push(`health checked, sent so far: ${JSON.stringify(t.sent[0])}`);
      },
      onCommitted: async () => {
        order.push('committed');
      },
    });
    expect(run.verdict.status).toBe('passed');
    expect(order).toEqual([`health checked, sent so far: ${JSON.stringify([commitRequest([commit])])}`, 'committed']);
    expect(t.sent[0]).toEqual([commitRequest([commit]), 'go\n']);
    // The files to move travel on stdin: the command line names none of them (nor the staged copy's secret name).
    expect(t.streams[0]).toMatch(/rollout-restart minkms '=> Server is up and running' [0-9,]+$/);
    expect(commitRequest([commit])).toBe(`1\n/etc/minkms/config.yaml\n/etc/minkms/.rollout-staged.R.config.yaml\n${'a'.repeat(64)}\n${'b'.repeat(64)}\n0\n0\n640\n`);
    expect(t.execs).toEqual([]);
  });

  it('fails when the state read right after the ready line is another invocation', async () => {
    const t = new FakeTransport('kms-1', [[...svc('old'), '@cursor C1', '@restarted 0', entry('=> Server is up and running...', 'new'), ...now('newer')]], () => showRunning('new'));
    const run = await restartAndGate(t, 'minkms', gate, () => undefined, redact);
    expect(run.verdict.status).toBe('failed');
    expect(run.verdict.reason).toContain('invocation newer');
  });

  it('a failed health check sends stop and is rethrown: nothing on the node was touched', async () => {
    const t = new FakeTransport('kms-1', [[]], () => showRunning('old'));
    const unhealthy = new Error('kms-2 is down');
    await expect(restartAndGate(t, 'minkms', gate, () => undefined, redact, { commits: [commit], beforeGo: () => Promise.reject(unhealthy) })).rejects.toBe(unhealthy);
    expect(t.sent[0]).toEqual([commitRequest([commit]), 'stop\n']);
  });

  it('a file changed since the plan is reported stale by the node', async () => {
    const t = new FakeTransport('kms-1', [['@stale /etc/minkms/config.yaml']], () => showRunning('old'));
    await expect(restartAndGate(t, 'minkms', gate, () => undefined, redact, { commits: [commit] })).rejects.toBeInstanceOf(StalePlanError);
  });

  it('a channel that never opened ran nothing: the not-started connection error is thrown', async () => {
    const t = new FakeTransport('kms-1', [[]], () => showRunning('old'));
    const lost = new ConnectionLostError('kms-1', 'unreachable: the SSH connection was lost and reconnecting failed', false);
    t.neverStarts = lost;
    await expect(restartAndGate(t, 'minkms', gate, () => undefined, redact, { commits: [commit] })).rejects.toBe(lost);
  });
});
