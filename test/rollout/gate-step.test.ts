import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { compileGate, type CompiledGate } from '../../src/rollout/gate.js';
import { gateStep, gateWakeAt, startGate, type GateState } from '../../src/rollout/gate-step.js';
import { restartLineParser, type RestartEvent } from '../../src/rollout/restart-stream.js';
import { shippedPlaybook } from '../helpers/plan-inputs.js';

// The gate driven by real channel output: `.jsonl` files are the journal after
// the cursor (with `.previous`, the invocation before the restart); `.stream`
// files are whole restart channels as restartAndFollow printed them on a lab node.
const dir = new URL('../fixtures/journal/', import.meta.url);
const text = (file: string) => readFileSync(new URL(file, dir), 'utf8');
const T0 = 1_000_000;
const svcBlock = (inv: string, state = 'ActiveState=active\nSubState=running') => ['@svc-begin', ...state.split('\n'), 'NRestarts=0', `InvocationID=${inv}`, 'MainPID=7', '@svc-end'];

/** A journal fixture as its restart channel: the state before, the cursor, the restart, then the entries. */
function journalChannel(name: string, keep: (line: string) => boolean = () => true): string[] {
  const previous = text(`${name}.previous`).trim();
  return [...svcBlock(previous), '@cursor C0', '@restarted 0', ...text(`${name}.jsonl`).trimEnd().split('\n').filter(keep)];
}
const streamFixture = (name: string) => text(`${name}.stream`).trimEnd().split('\n');
// The invocation that logged restart-ok's ready line.
const NEW = '1a4414c81b40407f914dae17166aa1d9';
// What follow.sh prints after a batch holding the ready text: the unit's state then.
const nowBlock = (invocation: string, pid: number) => ['@now-begin', 'ActiveState=active', 'SubState=running', 'NRestarts=0', `InvocationID=${invocation}`, `MainPID=${pid}`, '@now-end'];
const message = (line: string) => (JSON.parse(line) as { MESSAGE: string }).MESSAGE;

let gate: CompiledGate;
beforeAll(async () => {
  gate = compileGate((await shippedPlaybook()).gate);
});

/** Feeds channel lines (parsed as the loop parses them) and loop events; stops where the gate stops reading. */
function drive(items: readonly (string | RestartEvent)[], from?: GateState, opts: { commits?: number; go?: boolean } = {}): GateState {
  let s = from ?? startGate({ unit: 'minkms', gate, startedAt: T0, commits: opts.commits ?? 0 });
  if (!from) {
    s = gateStep(s, { type: 'open', channel: 'restart' });
    if (opts.go !== false) s = gateStep(s, { type: 'go' });
  }
  const parse = restartLineParser();
  for (const item of items) {
    const ev = typeof item === 'string' ? parse(item) : item;
    if (ev) s = gateStep(s, ev);
    if (s.next !== 'read') return s;
  }
  return s;
}
const tick = (ms: number): RestartEvent => ({ type: 'tick', now: T0 + ms });
const messages = (s: GateState) => s.verdict.evidence.map((e) => e.message);

describe('gateStep: a crash loop', () => {
  const systemdOnly = (l: string) => l.includes('"_PID":"1"');

  it('fails at systemd\'s first "Main process exited" of the new invocation, without reading the rest of the loop', () => {
    const s = drive(journalChannel('crash-loop', systemdOnly));
    expect(s.verdict.status).toBe('failed');
    expect(s.verdict.reason).toBe('the service stopped or is restarting in a loop: minkms.service: Main process exited, code=exited, status=1/FAILURE');
    expect(messages(s)).toEqual(['Started minkms.service - MinIO KMS.', 'minkms.service: Main process exited, code=exited, status=1/FAILURE']);
    expect(s.next).toBe('done');
    expect(s.unreachable).toBe(false);
  });

  it('fails on "Scheduled restart job" when that is the first sign of the loop', () => {
    const s = drive(journalChannel('crash-loop', (l) => systemdOnly(l) && !/Main process exited|Failed with result/.test(l)));
    expect(s.verdict.reason).toBe('the service stopped or is restarting in a loop: minkms.service: Scheduled restart job, restart counter is at 1.');
    expect(messages(s).at(-1)).toBe('minkms.service: Scheduled restart job, restart counter is at 1.');
  });

  it('with the process\'s own error line: that line decides, and the evidence runs on to systemd\'s report of the exit', () => {
    const s = drive(journalChannel('crash-loop'));
    expect(s.verdict.reason).toBe('a failure line was logged (matches /^Error:/)');
    expect(messages(s)).toEqual(['Started minkms.service - MinIO KMS.', 'Error: failed to open HSM: simulated', 'minkms.service: Main process exited, code=exited, status=1/FAILURE']);
    expect(s.next).toBe('done');
  });
});

describe('gateStep: a failure line and its grace', () => {
  it('keeps reading after the failure line until systemd reports the exit, so the evidence holds the whole error', () => {
    const lines = journalChannel('vault-denied');
    const failureAt = lines.findIndex((l) => l.includes('Error making API request'));
    const during = drive(lines.slice(0, failureAt + 1));
    expect(during.verdict.status).toBe('failed');
    expect(during.next).toBe('read');
    expect(gateWakeAt(during)).toBe(T0 + 2000);
    const s = drive(lines);
    expect(s.verdict.reason).toBe('a failure line was logged (matches /Error making API request/)');
    expect(messages(s)).toEqual(['Started minkms.service - MinIO KMS.', 'Error making API request. Code: 403. Errors: * permission denied', 'minkms.service: Main process exited, code=exited, status=1/FAILURE']);
    expect(s.next).toBe('done');
  });

  it('stops reading when the grace ends without a word from systemd (a tick at its end)', () => {
    // Without systemd's report of the exit (only its "Started" line kept): the grace alone ends the reading.
    const lines = journalChannel('vault-denied').filter((l) => !l.includes('"_PID":"1"') || message(l).startsWith('Started'));
    const failureAt = lines.findIndex((l) => l.includes('Error making API request'));
    const s1 = drive([...lines.slice(0, failureAt + 1), tick(1999)]);
    expect(s1.next).toBe('read');
    const s2 = gateStep(s1, tick(2000));
    expect(s2.next).toBe('done');
    expect(s2.verdict.reason).toBe('a failure line was logged (matches /Error making API request/)');
    expect(messages(s2).at(-1)).toBe('Error making API request. Code: 403. Errors: * permission denied');
  });
});

describe('gateStep: the ready line and the state after it', () => {
  it('@now: systemd\'s state right after the batch decides, and the reason says so', () => {
    const s = drive([...journalChannel('restart-ok'), '@now-begin', 'ActiveState=active', 'SubState=running', 'NRestarts=0', `InvocationID=${NEW}`, 'MainPID=293', '@now-end']);
    expect(s.verdict.reason).toBe('the ready line was logged by the new process; right after it, systemd reported the unit active/running in that invocation');
    expect(s.state?.mainPid).toBe(293);
  });

  it('a heartbeat after the ready line (no state with its batch): the state is to be read apart, and that read decides', () => {
    const pending = drive([...journalChannel('restart-ok'), '.']);
    expect(pending.next).toBe('read-state');
    const s = gateStep(pending, { type: 'state', state: { activeState: 'activating', subState: 'auto-restart', nRestarts: 1, invocationId: 'later', mainPid: 0 } });
    expect(s.verdict.status).toBe('failed');
    expect(s.verdict.reason).toBe('the ready line was logged but minkms is now activating/auto-restart (invocation later)');
  });

  it('a ready line logged by a child process (not the main one): the state read after it decides', () => {
    const lines = streamFixture('ready-child');
    const s = drive(lines);
    const ready = s.verdict.evidence[0]!;
    expect(s.verdict.status).toBe('passed');
    expect(ready.message).toBe('=> Server is up and running...');
    expect(ready.pid).not.toBe(s.state?.mainPid);
    expect(s.verdict.reason).toBe('the ready line was logged by the new process; right after it, systemd reported the unit active/running in that invocation');
  });

  it('a ready line, then the process exits: the state after it is not that invocation running, the gate fails', () => {
    const s = drive(streamFixture('ready-then-exit'));
    expect(s.verdict.status).toBe('failed');
    // systemd keeps the invocation id while it waits to restart the unit: the state, not the id, decides.
    expect(s.verdict.reason).toBe('the ready line was logged but minkms is now activating/auto-restart (invocation 4596977331f346f0a6760e187aff6585)');
    expect(s.verdict.evidence[0]!.invocationId).toBe('4596977331f346f0a6760e187aff6585');
    expect(messages(s)).toEqual(['=> Server is up and running...']);
  });

  it('a ready line of the invocation from before the restart does not count; the new one\'s does', () => {
    // restart-ok's own ready line, as the old invocation (the one @svc named) would have logged it after the cursor.
    const lines = journalChannel('restart-ok');
    const previous = text('restart-ok.previous').trim();
    const ready = JSON.parse(lines.at(-1)!) as Record<string, unknown>;
    const oldReady = JSON.stringify({ ...ready, __CURSOR: `${String(ready.__CURSOR)}-old`, _PID: '201', _SYSTEMD_INVOCATION_ID: previous });
    const at = lines.indexOf('@restarted 0') + 1;
    const withOld = [...lines.slice(0, at), oldReady, ...lines.slice(at)];
    const pending = drive([...withOld.slice(0, -1), ...nowBlock(previous, 201)]);
    expect(pending.verdict.status).toBe('pending');
    expect(pending.next).toBe('read');
    const s = drive([...withOld, ...nowBlock(NEW, 293)]);
    expect(s.verdict.status).toBe('passed');
    expect(s.verdict.evidence[0]!.invocationId).toBe(NEW);
  });
});

describe('gateStep: no ready line in time', () => {
  it('fails at the deadline tick with the last lines as evidence, showing each line while it waits', () => {
    const lines = journalChannel('restart-ok').slice(0, -1);
    let s = drive(lines);
    expect(s.verdict.status).toBe('pending');
    expect(s.show).toBe('Docs        https://min.io/docs/kms');
    const deadline = gateWakeAt(s)!;
    expect(deadline).toBe(T0 + gate.timeoutMs + gate.restartTimeoutMs);
    s = gateStep(s, { type: 'tick', now: deadline - 1 });
    expect(s.next).toBe('read');
    s = gateStep(s, { type: 'tick', now: deadline });
    expect(s.verdict.status).toBe('failed');
    expect(s.verdict.reason).toBe(`no ready line ("=> Server is up and running") within ${gate.timeoutMs / 1000} s`);
    expect(messages(s)).toEqual(['HSM         local (MINIO_KMS_HSM_KEY)', 'Cluster ID  a172cdb1-ab5b-f9ec-760f-bc737ecc3b4a', 'Endpoint    https://kms-1:7373', 'API Key     k1:NI8o1DFxV9BLpEZCLZHfo2UYASxZZsA98e6JyA_gtjY', 'Docs        https://min.io/docs/kms']);
    expect(s.unreachable).toBe(false);
  });
});

describe('gateStep: a lost link', () => {
  const channel = journalChannel('restart-ok');
  const beforeRestart = channel.slice(0, channel.indexOf('@restarted 0'));

  it('before go: nothing was touched and what that channel said counts for nothing; a fresh restart channel', () => {
    const s = drive([...beforeRestart, { type: 'end' }], undefined, { go: false, commits: 1 });
    expect(s.next).toBe('restart');
    expect(s.before).toBeNull();
    expect(s.cursor).toBeNull();
    expect(s.committed).toBe(false);
  });

  it('after go, before the moves were confirmed: ask which files landed, then whether the unit restarted', () => {
    let s = drive([...beforeRestart, { type: 'end' }], undefined, { commits: 1 });
    expect(s.next).toBe('check-files');
    s = gateStep(s, { type: 'files-checked', left: 0 });
    expect(s.committed).toBe(true);
    expect(s.next).toBe('check-restart');
    const lost = gateStep(gateStep(s, tick(1500)), { type: 'lost', detail: 'kms-1: the SSH connection was lost' });
    expect(lost.verdict.reason).toBe('the node stopped answering during its restart (kms-1: the SSH connection was lost) after 1.5 s');
    expect(lost.unreachable).toBe(true);
  });

  it('after go, restart unconfirmed: the invocation from before still runs → restart again; another one → follow from the cursor', () => {
    const s = drive([...beforeRestart, { type: 'end' }]);
    expect(s.next).toBe('check-restart');
    const same = gateStep(s, { type: 'state', state: { ...s.before! } });
    expect(same.next).toBe('restart');
    expect(same.cursor).toBeNull();
    const other = gateStep(s, { type: 'state', state: { ...s.before!, invocationId: 'new' } });
    expect(other.next).toBe('follow');
    expect(other.cursor).toBe('C0');
  });

  it('after the restart: follow from the same cursor; the journal read again decides', () => {
    const cut = channel.indexOf('@restarted 0') + 4;
    let s = drive([...channel.slice(0, cut), { type: 'end' }]);
    expect(s.next).toBe('follow');
    s = gateStep(s, { type: 'open', channel: 'follow' });
    s = drive([...channel.slice(channel.indexOf('@restarted 0') + 1), ...nowBlock(NEW, 293)], s);
    expect(s.verdict.status).toBe('passed');
    expect(s.cursor).toBe('C0');
  });

  it('moves that failed, a stale target and a restart that timed out each end the gate', () => {
    expect(drive(['@stale /etc/minkms/config.yaml'], undefined, { commits: 1 }).abort).toEqual({ kind: 'stale', path: '/etc/minkms/config.yaml' });
    expect(drive(['@error cannot move the staged copy of /x into place'], undefined, { commits: 1 }).abort).toEqual({ kind: 'move-failed', text: 'cannot move the staged copy of /x into place' });
    const s = drive([...beforeRestart, '@restarted 124']);
    expect(s.verdict.reason).toBe(`systemctl restart minkms did not return within ${gate.restartTimeoutMs / 1000} s (the old process may ignore SIGTERM)`);
  });

  it('reconnecting failed before the deadline: stopped answering; after it: the timeout', () => {
    const s = drive([...channel.slice(0, channel.indexOf('@restarted 0') + 4), { type: 'end' }]);
    const lost = gateStep(gateStep(s, tick(3000)), { type: 'lost', detail: null });
    expect(lost.verdict.reason).toBe('the node stopped answering during its gate (SSH connection lost, reconnecting failed) after 3.0 s');
    expect(lost.unreachable).toBe(true);
    const late = gateStep(s, tick(gate.timeoutMs + gate.restartTimeoutMs));
    expect(late.verdict.reason).toMatch(/^no ready line/);
  });
});

describe('restartLineParser', () => {
  it('turns each tag line of the channel into its event, a state block into one event at its end', () => {
    const parse = restartLineParser();
    const events = ['@svc-begin', 'ActiveState=active', 'SubState=running', 'NRestarts=2', 'InvocationID=ab', 'MainPID=7', '@svc-end', '@cursor s=1;i=2', '@pong', '@file /etc/minkms/config.yaml', '@committed', '@restarted 0', '.', '@stale /a', '@error no journal cursor', '', '-- No entries --']
      .map(parse).filter((e) => e !== null);
    expect(events).toEqual([
      { type: 'svc', state: { activeState: 'active', subState: 'running', nRestarts: 2, invocationId: 'ab', mainPid: 7 } },
      { type: 'cursor', cursor: 's=1;i=2' },
      { type: 'pong' },
      { type: 'file', path: '/etc/minkms/config.yaml' },
      { type: 'committed' },
      { type: 'restarted', code: 0 },
      { type: 'heartbeat' },
      { type: 'stale', path: '/a' },
      { type: 'error', text: 'no journal cursor' },
    ]);
    expect(streamFixture('ready-child').map(restartLineParser()).filter((e) => e?.type === 'now')).toHaveLength(1);
  });
});
