import { describe, expect, it } from 'vitest';
import { compileGate } from '../../src/rollout/gate.js';
import { restartAndGate } from '../../src/rollout/restart-gate.js';
import { FakeTransport, showRunning } from '../helpers/fake-transport.js';

const gate = compileGate({ ready: '=> Server is up and running', failOn: ['^Error:'], timeoutSeconds: 5, restartTimeoutSeconds: 5 });
const redact = (s: string) => s;
const svc = (inv: string) => [`@svc ActiveState=active`, `@svc SubState=running`, `@svc NRestarts=0`, `@svc InvocationID=${inv}`, `@svc MainPID=1`];
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
    expect(t.streams[1]).toMatch(/rollout-follow minkms C1$/);
    expect(run.verdict.status).toBe('passed');
  });
});
