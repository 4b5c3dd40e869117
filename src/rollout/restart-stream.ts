import { parseJournalLine, parseServiceState, type JournalEntry, type ServiceState } from './journal.js';

/**
 * Everything the gate learns, as data. The first group is what a restart or
 * follow channel prints (restartAndFollow, followFrom); the second is what the
 * I/O loop around the gate observes itself. Time enters only as `tick`.
 */
export type RestartEvent =
  /** The unit's state before anything was touched (`@svc-begin` .. `@svc-end`). */
  | { type: 'svc'; state: ServiceState }
  /** The journal cursor taken before the restart: only entries after it count. */
  | { type: 'cursor'; cursor: string }
  /** A waiting channel answered `ping`: its link is alive. */
  | { type: 'pong' }
  | { type: 'file'; path: string }
  /** Every staged file is in place. */
  | { type: 'committed' }
  /** `systemctl restart` returned this exit code (124: its timeout). */
  | { type: 'restarted'; code: number }
  | { type: 'error'; text: string }
  /** A target no longer holds what the plan read: nothing was touched. */
  | { type: 'stale'; path: string }
  | { type: 'entry'; entry: JournalEntry }
  /** The unit's state read on the node right after the batch holding the ready text (`@now-begin` .. `@now-end`). */
  | { type: 'now'; state: ServiceState }
  /** One poll of the journal ended. */
  | { type: 'heartbeat' }
  /** The loop opened (or took over) a channel. */
  | { type: 'open'; channel: 'restart' | 'follow' }
  /** The loop sent `go`: from now on the node may move files and restart. */
  | { type: 'go' }
  /** The channel ended (by itself, or because the loop closed it). */
  | { type: 'end' }
  /** A question the loop asked the node found it unreachable; `detail` is the error's text. */
  | { type: 'lost'; detail: string | null }
  /** After a cut channel, the loop asked which staged files still have to be moved. */
  | { type: 'files-checked'; left: number }
  /** The unit's state as the loop read it apart (`systemctl show`). */
  | { type: 'state'; state: ServiceState }
  | { type: 'tick'; now: number };

/**
 * A parser for one channel: each call takes the next line and returns its
 * event, or null for a line that says nothing (a line inside a state block,
 * a blank, anything that is not an entry). Keep one per channel.
 */
export function restartLineParser(): (line: string) => RestartEvent | null {
  let block: { end: '@svc-end' | '@now-end'; lines: string[] } | null = null;
  return (line) => {
    if (block) {
      if (line !== block.end) {
        block.lines.push(line);
        return null;
      }
      const state = parseServiceState(block.lines.join('\n'));
      const type = block.end === '@svc-end' ? 'svc' : 'now';
      block = null;
      return { type, state };
    }
    if (line === '@svc-begin') block = { end: '@svc-end', lines: [] };
    else if (line === '@now-begin') block = { end: '@now-end', lines: [] };
    else if (line === '.') return { type: 'heartbeat' };
    else if (line === '@pong') return { type: 'pong' };
    else if (line === '@committed') return { type: 'committed' };
    else if (line.startsWith('@cursor ')) return { type: 'cursor', cursor: line.slice(8) };
    else if (line.startsWith('@file ')) return { type: 'file', path: line.slice(6) };
    else if (line.startsWith('@restarted ')) return { type: 'restarted', code: Number(line.slice(11)) };
    else if (line.startsWith('@error ')) return { type: 'error', text: line.slice(7) };
    else if (line.startsWith('@stale ')) return { type: 'stale', path: line.slice(7) };
    else {
      const entry = parseJournalLine(line);
      return entry ? { type: 'entry', entry } : null;
    }
    return null;
  };
}
