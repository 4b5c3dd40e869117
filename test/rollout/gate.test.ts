import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileGate, evaluateGate } from '../../src/rollout/gate.js';
import { parseJournalLine, parseServiceState, stripAnsi, type JournalEntry } from '../../src/rollout/journal.js';
import { shippedPlaybook } from '../helpers/plan-inputs.js';

// Real `journalctl -u minkms -o json --after-cursor=...` output captured from lab
// nodes (systemd 252), with the InvocationID the unit had before the restart.
function fixture(name: string): { entries: JournalEntry[]; previous: string } {
  const dir = new URL('../fixtures/journal/', import.meta.url);
  const lines = readFileSync(new URL(`${name}.jsonl`, dir), 'utf8').trim().split('\n');
  return {
    entries: lines.map(parseJournalLine).filter((e): e is JournalEntry => e !== null),
    previous: readFileSync(new URL(`${name}.previous`, dir), 'utf8').trim(),
  };
}

const gate = async () => compileGate((await shippedPlaybook()).gate);

describe('evaluateGate on real journal output', () => {
  it('passes on the coloured ready line of the new invocation', async () => {
    const { entries, previous } = fixture('restart-ok');
    const v = evaluateGate(entries, await gate(), previous);
    expect(v.status).toBe('passed');
    expect(v.evidence[0]!.message).toBe('=> Server is up and running...');
    expect(v.evidence[0]!.invocationId).not.toBe(previous);
  });

  it('is pending while the new process has not logged the ready line', async () => {
    const { entries, previous } = fixture('restart-ok');
    expect(evaluateGate(entries.slice(0, -1), await gate(), previous).status).toBe('pending');
  });

  it('fails at the first failure line, not at a timeout', async () => {
    const { entries, previous } = fixture('vault-denied');
    const v = evaluateGate(entries, await gate(), previous);
    expect(v.status).toBe('failed');
    expect(v.evidence.at(-1)!.message).toBe('Error making API request. Code: 403. Errors: * permission denied');
    expect(v.evidence[0]!.message).toBe('Started minkms.service - MinIO KMS.');
  });

  it('fails on a crash loop even when the process logs nothing recognisable', async () => {
    const { entries, previous } = fixture('crash-loop');
    const silent = entries.filter((e) => e.fromManager);
    const v = evaluateGate(silent, await gate(), previous);
    expect(v.status).toBe('failed');
    expect(v.reason).toContain('Main process exited, code=exited, status=1/FAILURE');
  });

  it('ignores lines of the invocation that was running before the restart', async () => {
    const { entries, previous } = fixture('restart-ok');
    const old: JournalEntry = { cursor: 'x', realtimeUs: 0, message: 'Error: shutting down', fromManager: false, invocationId: previous };
    const oldReady: JournalEntry = { ...old, message: '=> Server is up and running...' };
    expect(evaluateGate([old, ...entries], await gate(), previous).status).toBe('passed');
    expect(evaluateGate([oldReady, ...entries.slice(0, -1)], await gate(), previous).status).toBe('pending');
  });
});

describe('journal parsing', () => {
  it('decodes byte-array messages, strips ANSI codes, keeps the logging process', () => {
    const bytes = [...Buffer.from('\x1b[1m\x1b[32m=> Server is up and running...\x1b[0m')];
    const e = parseJournalLine(JSON.stringify({ __CURSOR: 'c', __REALTIME_TIMESTAMP: '5', MESSAGE: bytes, _PID: '42', _SYSTEMD_INVOCATION_ID: 'abc' }));
    expect(e).toEqual({ cursor: 'c', realtimeUs: 5, message: '=> Server is up and running...', fromManager: false, invocationId: 'abc', pid: 42 });
  });

  it('takes the invocation of a systemd line from INVOCATION_ID', () => {
    const e = parseJournalLine(JSON.stringify({ __CURSOR: 'c', MESSAGE: 'Started x', _PID: '1', INVOCATION_ID: 'new', _SYSTEMD_INVOCATION_ID: 'init' }));
    expect(e?.invocationId).toBe('new');
    expect(e?.fromManager).toBe(true);
  });

  it('skips lines that are not journal entries', () => {
    expect(parseJournalLine('-- No entries --')).toBeNull();
  });

  it('strips colour codes', () => {
    expect(stripAnsi('\x1b[1mHSM\x1b[0m  vault')).toBe('HSM  vault');
  });

  it('parses systemctl show', () => {
    expect(parseServiceState('ActiveState=active\nSubState=running\nNRestarts=2\nInvocationID=ab\nMainPID=77\n')).toEqual({
      activeState: 'active', subState: 'running', nRestarts: 2, invocationId: 'ab', mainPid: 77,
    });
  });
});
