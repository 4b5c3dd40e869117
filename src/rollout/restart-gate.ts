import { ConnectionLostError, NodeError, RemoteCommandError, StalePlanError } from '../errors.js';
import { readRemoteFiles } from '../agent/files.js';
import type { LineStream, Transport } from '../transport/transport.js';
import type { Redactor } from '../util/redact.js';
import type { CompiledGate, GateVerdict } from './gate.js';
import { gateStep, gateWakeAt, startGate, type GateState } from './gate-step.js';
import { followFrom, readServiceState, restartAndFollow, type ServiceState, type StagedCommit } from './journal.js';
import { restartLineParser, type RestartEvent } from './restart-stream.js';

/** One restart and what its gate decided, with the journal lines that decided it. */
export type GateRun = {
  verdict: GateVerdict;
  /** true when the node stopped answering during the gate: what it runs now is unknown. */
  unreachable: boolean;
  /** When the restart was asked for and when the gate decided (ms since epoch, this machine's clock). */
  startedAt: number;
  decidedAt: number;
  /** The unit's state that decided a passed gate (read right after the ready line). */
  state?: ServiceState;
};

/** Besides the restart: staged files to move into place first, and what must hold before anything is touched. */
export type RestartOptions = {
  commits?: readonly StagedCommit[];
  /** Resolves before the node is touched (the cluster health check); a rejection is rethrown, nothing touched. */
  beforeGo?: () => Promise<void>;
  /** Called once every commit is in place, before the restart is judged (to record the write). */
  onCommitted?: () => Promise<void>;
  /** Called when the restart command returned success: the unit is starting, the node mostly waits. */
  onRestarted?: () => void;
  /** The channel openRestart opened ahead of this turn, with these commits; else one is opened now. */
  channel?: LineStream;
  /** Pings already sent down `channel` (see AheadPings); absent: none. */
  pings?: AheadPings;
};

/**
 * Pings already sent down a channel opened ahead, their pongs not yet read.
 * `fresh`: the last went out with the other nodes' check this turn relies on,
 * so its pong proves the link as recently, and the turn sends none of its own.
 */
export type AheadPings = { sent: number; fresh: boolean };

/**
 * Opens a node's restart channel ahead of its turn, while the node before it
 * restarts, so that its checks, state and cursor are ready when the turn comes;
 * it waits for `go` up to `waitMs` on top of its own bound.
 */
export function openRestart(t: Transport, unit: string, gate: CompiledGate, commits: readonly StagedCommit[], waitMs: number): LineStream {
  return restartAndFollow(t, unit, gate.restartTimeoutMs / 1000, channelSeconds(gate) + waitMs / 1000, commits, gate.ready);
}

// A restart channel's bound: the restart and the gate, plus a margin for the moves.
function channelSeconds(gate: CompiledGate): number {
  return (gate.timeoutMs + gate.restartTimeoutMs) / 1000 + 30;
}

/**
 * Moves the staged files into place, restarts `unit` and waits for its gate.
 * The I/O around gateStep, which decides: it opens (or takes over) the channel,
 * sends ping, go or stop, feeds every line and answer to the reducer and does
 * what its `next` asks (reconnect, ask the node what already happened, read the
 * unit's state). Throws StalePlanError (nothing touched), `beforeGo`'s error
 * (nothing touched) or a NodeError when the moves failed.
 */
export async function restartAndGate(t: Transport, unit: string, gate: CompiledGate, progress: (text: string) => void, redact: Redactor, opts: RestartOptions = {}): Promise<GateRun> {
  const startedAt = Date.now();
  let commits = [...(opts.commits ?? [])];
  let s = startGate({ unit, gate, startedAt, commits: commits.length, redact });
  const elapsed = () => ((Date.now() - startedAt) / 1000).toFixed(1);

  // Every event comes after a tick: the reducer knows the time only from them.
  const tick = () => {
    s = gateStep(s, { type: 'tick', now: Date.now() });
  };
  const feed = async (ev: RestartEvent) => {
    tick();
    const wasCommitted = s.committed;
    s = gateStep(s, ev);
    if (s.show !== null) progress(`waiting for the ready line (${elapsed()} s): ${redact(s.show)}`);
    if (!wasCommitted && s.committed) await opts.onCommitted?.();
    if (ev.type === 'restarted' && ev.code === 0) opts.onRestarted?.();
  };

  const parsers = new WeakMap<LineStream, (line: string) => RestartEvent | null>();
  // Reads a channel until it ends or the reducer stops reading it; a tick at
  // the deadline or the end of a failure grace closes it.
  const read = async (it: AsyncIterator<string>, stream: LineStream, until?: (ev: RestartEvent) => boolean): Promise<boolean> => {
    const parse = parsers.get(stream) ?? restartLineParser();
    parsers.set(stream, parse);
    let timer: NodeJS.Timeout | undefined;
    let armed: number | null = null;
    const arm = () => {
      const at = gateWakeAt(s);
      if (at === armed) return;
      clearTimeout(timer);
      armed = at;
      if (at === null) return;
      timer = setTimeout(() => {
        armed = null;
        tick();
        if (s.next !== 'read') stream.close();
        else arm();
      }, Math.max(0, at - Date.now()));
    };
    try {
      for (arm(); s.next === 'read'; arm()) {
        const r = await it.next();
        if (r.done) return false;
        const ev = parse(r.value);
        if (!ev) continue;
        await feed(ev);
        if (until?.(ev)) return true;
      }
      return false;
    } finally {
      clearTimeout(timer);
    }
  };
  const open = () => restartAndFollow(t, unit, gate.restartTimeoutMs / 1000, channelSeconds(gate), s.committed ? [] : commits, gate.ready);
  let anyStarted = false;
  let attempts = 0;
  while (s.next !== 'done') {
    tick();
    if (s.next === 'restart' || s.next === 'follow') {
      if (attempts === 3) {
        await feed({ type: 'lost', detail: null });
        break;
      }
      const ahead = attempts === 0 ? opts.channel : undefined;
      attempts++;
      let stream: LineStream;
      let it: AsyncIterator<string>;
      if (s.next === 'restart') {
        stream = ahead ?? open();
        it = stream.lines[Symbol.asyncIterator]();
        await feed({ type: 'open', channel: 'restart' });
        // A channel opened ahead has waited through another node's turn: its link
        // must answer now (or did, with the other nodes' check), or go could be lost
        // with it (and the node's state unknown). The last ping's pong is the one that counts.
        let answered = Promise.resolve(true);
        if (ahead) {
          const pings = opts.pings ?? { sent: 0, fresh: false };
          const want = pings.sent + (pings.fresh ? 0 : 1);
          let pongs = 0;
          answered = pings.fresh || stream.send('ping\n') ? read(it, stream, (ev) => ev.type === 'pong' && ++pongs === want) : Promise.resolve(false);
        }
        if (opts.beforeGo) progress('checking the other nodes');
        try {
          await opts.beforeGo?.();
        } catch (err) {
          stream.send('stop\n');
          stream.close();
          throw err;
        }
        const ok = await answered;
        throwAbort(t, s, stream);
        progress(!s.committed ? `writing ${commits.map((c) => c.path).join(', ')} and restarting ${unit}` : `restarting ${unit}`);
        if (!ok || !stream.send('go\n')) {
          // It ended before go (its link was lost while it waited): nothing on the
          // node was touched; a fresh channel, which reconnects.
          stream.close();
          await feed({ type: 'end' });
          stream = open();
          it = stream.lines[Symbol.asyncIterator]();
          await feed({ type: 'open', channel: 'restart' });
          stream.send('go\n');
        }
        await feed({ type: 'go' });
      } else {
        progress(`reading the journal again from the cursor (${elapsed()} s)`);
        stream = followFrom(t, unit, s.cursor ?? '', channelSeconds(gate), gate.ready);
        it = stream.lines[Symbol.asyncIterator]();
        await feed({ type: 'open', channel: 'follow' });
      }
      try {
        await read(it, stream);
      } finally {
        stream.close();
      }
      await feed({ type: 'end' });
      // A first channel that never opened ran nothing: the node is as it was.
      if (stream.started()) anyStarted = true;
      else if (!anyStarted && !s.committed && s.cursor === null) throw stream.failure() ?? new ConnectionLostError(t.name, 'unreachable: no SSH channel could be opened', false);
      throwAbort(t, s, stream);
      continue;
    }
    try {
      if (s.next === 'check-files') {
        // The link dropped before the moves were confirmed: ask the node which landed.
        commits = await remainingCommits(t, commits);
        await feed({ type: 'files-checked', left: commits.length });
      } else if (s.next === 'check-restart' || s.next === 'read-state') {
        await feed({ type: 'state', state: await readServiceState(t, unit) });
      }
    } catch (err) {
      if (!(err instanceof ConnectionLostError)) throw err;
      await feed({ type: 'lost', detail: err.message });
    }
  }
  return { verdict: s.verdict, unreachable: s.unreachable, startedAt, decidedAt: Date.now(), ...(s.state && s.verdict.status === 'passed' ? { state: s.state } : {}) };
}

// What the node refused before restarting: nothing was restarted.
function throwAbort(t: Transport, s: GateState, stream: LineStream): void {
  if (!s.abort) return;
  stream.close();
  if (s.abort.kind === 'stale') throw new StalePlanError(t.name, s.abort.path);
  throw new RemoteCommandError(t.name, 'moving the staged files into place', 1, s.abort.text);
}

/** The deciding journal lines, redacted and indented, for messages and reports. */
export function renderGateEvidence(run: GateRun, redact: Redactor): string {
  if (run.verdict.evidence.length === 0) return '    (no journal line of the new process)';
  return run.verdict.evidence
    .map((e) => `    ${new Date(e.realtimeUs / 1000).toISOString()} ${redact(e.message)}`)
    .join('\n');
}

// After a cut channel: which staged files still have to be moved (their target
// still old); a target holding neither old nor new content is a state rollout
// cannot vouch for.
async function remainingCommits(t: Transport, commits: readonly StagedCommit[]): Promise<StagedCommit[]> {
  const left: StagedCommit[] = [];
  const files = await readRemoteFiles(t, commits.map((c) => c.path));
  for (const c of commits) {
    const f = files.get(c.path);
    if (f?.sha256 === c.afterSha256) continue;
    if (f?.sha256 !== c.beforeSha256) throw new NodeError(t.name, `${c.path} holds neither the old nor the new content after a lost connection`);
    left.push(c);
  }
  return left;
}
