import { describe, expect, it } from 'vitest';
import { stagedMoves } from '../../src/apply/file-change.js';
import { applyRestart, dismissRestartChannel, openRestartChannel } from '../../src/apply/restart.js';
import { StalePlanError } from '../../src/errors.js';
import type { FileChange, RestartChange } from '../../src/plan/types.js';
import { compileGate } from '../../src/rollout/gate.js';
import { commitRequest } from '../../src/rollout/journal.js';
import { FakeTransport } from '../helpers/fake-transport.js';

// The restart executor against a scripted node: what it sends on the restart channel, and what it makes of the answer.
const gate = compileGate({ ready: '=> Server is up and running', failOn: ['^Error:'], timeoutSeconds: 5, restartTimeoutSeconds: 5 });
const ctx = { gate, progress: () => undefined, redact: (s: string) => s };
const restart: RestartChange = { kind: 'restart', unit: 'minkms' };
const change: FileChange = { kind: 'file', file: 'config', path: '/etc/minkms/config.yaml', before: 'a\n', after: 'b\n', beforeSha256: 'a'.repeat(64), afterSha256: 'b'.repeat(64), uid: 0, gid: 997, mode: 0o640 };
const moves = { changes: [change], stageKey: 'K' };
const svc = (inv: string) => ['@svc-begin', 'ActiveState=active', 'SubState=running', 'NRestarts=0', `InvocationID=${inv}`, 'MainPID=1', '@svc-end'];
const now = (inv: string) => ['@now-begin', 'ActiveState=active', 'SubState=running', 'NRestarts=0', `InvocationID=${inv}`, 'MainPID=2', '@now-end'];
const ready = (inv: string) => JSON.stringify({ __CURSOR: 'c', __REALTIME_TIMESTAMP: '1', MESSAGE: '=> Server is up and running...', _PID: '42', _SYSTEMD_INVOCATION_ID: inv });
const noCommand = () => {
  throw new Error('no command may be needed');
};

describe('applyRestart', () => {
  it('moves what the file-change executor staged right before the restart, after beforeGo, and passes on the new invocation', async () => {
    const order: string[] = [];
    const t = new FakeTransport('kms-1', [[...svc('old'), '@cursor C1', '@file /etc/minkms/config.yaml', '@committed', '@restarted 0', ready('new'), ...now('new')]], noCommand);
    const run = await applyRestart(t, restart, ctx, {
      moves,
      beforeGo: async () => {
        order.push(`checked; sent ${t.sent[0]!.length}`);
      },
      onMoved: async () => {
        order.push('moved');
      },
    });
    expect(run.verdict.status).toBe('passed');
    expect(t.streams).toHaveLength(1);
    expect(t.streams[0]).toContain('rollout-restart');
    expect(t.sent[0]).toEqual([commitRequest(stagedMoves([change], 'K')), 'go\n']);
    expect(t.sent[0]![0]).toContain('/etc/minkms/.rollout-staged.K.config.yaml');
    expect(order).toEqual(['checked; sent 1', 'moved']);
  });

  it('a restart without moves (restart-only, or the restart after a restore) asks the node to move nothing', async () => {
    const t = new FakeTransport('kms-1', [[...svc('old'), '@cursor C1', '@committed', '@restarted 0', ready('new'), ...now('new')]], noCommand);
    const run = await applyRestart(t, restart, ctx);
    expect(run.verdict.status).toBe('passed');
    expect(t.sent[0]).toEqual(['0\n', 'go\n']);
  });

  it('a file no longer as planned at the move: StalePlanError, nothing touched', async () => {
    const t = new FakeTransport('kms-1', [['@stale /etc/minkms/config.yaml']], noCommand);
    await expect(applyRestart(t, restart, ctx, { moves })).rejects.toThrow(StalePlanError);
  });

  it('a failing beforeGo (another node unhealthy): its error, and the channel told to stop, never to go', async () => {
    const t = new FakeTransport('kms-1', [[...svc('old'), '@cursor C1']], noCommand);
    const unhealthy = new Error('kms-2 is failed');
    await expect(applyRestart(t, restart, ctx, { moves, beforeGo: () => Promise.reject(unhealthy) })).rejects.toBe(unhealthy);
    expect(t.sent[0]).toEqual([commitRequest(stagedMoves([change], 'K')), 'stop\n']);
  });

  it('a restart that fails: the gate fails with systemctl\'s exit code', async () => {
    const t = new FakeTransport('kms-1', [[...svc('old'), '@cursor C1', '@committed', '@restarted 1']], noCommand);
    const run = await applyRestart(t, restart, ctx, { moves });
    expect(run.verdict).toMatchObject({ status: 'failed', reason: 'systemctl restart minkms failed (exit 1)' });
    expect(run.unreachable).toBe(false);
  });
});

describe('openRestartChannel', () => {
  it('opens the turn ahead with the staged moves; dismissed, it is told to stop and never to go', () => {
    const t = new FakeTransport('kms-2', [[...svc('old'), '@cursor C1']], noCommand);
    const stream = openRestartChannel(t, restart, gate, moves);
    dismissRestartChannel(stream);
    expect(t.streams[0]).toContain('rollout-restart');
    expect(t.sent[0]).toEqual([commitRequest(stagedMoves([change], 'K')), 'stop\n']);
  });

  it('a turn opened ahead is used by applyRestart: one channel, pinged, then go', async () => {
    const t = new FakeTransport('kms-2', [[...svc('old'), '@cursor C1', '@pong', '@committed', '@restarted 0', ready('new'), ...now('new')]], noCommand);
    const channel = openRestartChannel(t, restart, gate, moves);
    const run = await applyRestart(t, restart, ctx, { moves, channel, beforeGo: async () => undefined });
    expect(run.verdict.status).toBe('passed');
    expect(t.streams).toHaveLength(1);
    expect(t.sent[0]).toEqual([commitRequest(stagedMoves([change], 'K')), 'ping\n', 'go\n']);
  });
});
