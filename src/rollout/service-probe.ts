// The unit's state on every node, asked many times per run (before each restart
// every other node is checked). An SSH session per question costs each node a
// fork and a PAM session; one long-lived channel per node that answers a line
// on stdin with `systemctl show` costs a single fork per question, and a
// `fast` question none while the main process systemd last reported is alive.
import { NodeError } from '../errors.js';
import type { LineStream, Transport } from '../transport/transport.js';
import { shellQuote } from '../util/shell-quote.js';
import { parseServiceState, readServiceState, SHOW_PROPERTIES, type ServiceState } from './journal.js';

/**
 * Reads a node's unit state now: `full` asks systemd; `fast` answers with the
 * last full state as long as the main process that state named is still alive
 * (the same process: pid and start time; not a zombie), and asks systemd when
 * it is not.
 */
export type StateReader = (node: string, how?: 'full' | 'fast') => Promise<ServiceState>;

// Questions are lines: `full` or `fast`. A full answer is systemctl's output and
// `@end`; it remembers the main pid and its start time (field 22 of
// /proc/PID/stat, after the command name, which may hold spaces). A fast answer
// is `@same` when that process is alive, read with shell builtins (no fork).
const PROBE_SCRIPT = `u=$1; pid=0; start=
alive() {
  [ "$pid" != 0 ] && [ -r /proc/$pid/stat ] && IFS= read -r l < /proc/$pid/stat || return 1
  set -- \${l##*) }
  [ "$1" != Z ] && [ "$1" != X ] && [ "\${20}" = "$start" ]
}
while IFS= read -r q; do
  if [ "$q" = fast ] && alive; then echo @same; continue; fi
  s=$(systemctl show -p ${SHOW_PROPERTIES} -- "$u"); printf '%s\n@end\n' "$s"
  pid=\${s##*MainPID=}; pid=\${pid%%[!0-9]*}; start=
  if [ "\${pid:-0}" != 0 ] && [ -r /proc/$pid/stat ] && IFS= read -r l < /proc/$pid/stat; then set -- \${l##*) }; start=\${20}; else pid=0; fi
done`;

/** One answer must come within this; otherwise the probe is dropped for a plain command. */
const ANSWER_TIMEOUT_MS = 30_000;

type Waiter = { resolve: (s: ServiceState) => void; reject: (e: Error) => void; lines: string[] };

// The last full answer: what a fast `@same` stands for.

// One node's probe: questions are answered in order, so waiters form a queue.
class Probe {
  readonly #t: Transport;
  readonly #unit: string;
  #stream: LineStream | null;
  readonly #waiting: Waiter[] = [];
  #last: ServiceState | null = null;

  constructor(t: Transport, unit: string) {
    this.#t = t;
    this.#unit = unit;
    this.#stream = t.stream(`sh -c ${shellQuote(PROBE_SCRIPT)} rollout-probe ${shellQuote(unit)}`, { input: true });
    void this.#read(this.#stream);
  }

  async #read(stream: LineStream): Promise<void> {
    try {
      for await (const line of stream.lines) {
        const head = this.#waiting[0];
        if (!head) continue;
        if (line === '@same' && this.#last) {
          this.#waiting.shift();
          head.resolve(this.#last);
          continue;
        }
        if (line !== '@end') {
          head.lines.push(line);
          continue;
        }
        this.#waiting.shift();
        this.#last = parseServiceState(head.lines.join('\n'));
        head.resolve(this.#last);
      }
    } finally {
      this.#drop(new NodeError(this.#t.name, 'the state probe channel ended'));
    }
  }

  #drop(err: Error): void {
    this.#stream?.close();
    this.#stream = null;
    for (const w of this.#waiting.splice(0)) w.reject(err);
  }

  /** Through the probe while it lives; after it ended (a lost link), a plain command (which reconnects). */
  async read(how: 'full' | 'fast'): Promise<ServiceState> {
    const stream = this.#stream;
    if (!stream) return readServiceState(this.#t, this.#unit);
    try {
      return await new Promise<ServiceState>((resolve, reject) => {
        const timer = setTimeout(() => this.#drop(new NodeError(this.#t.name, 'the state probe did not answer')), ANSWER_TIMEOUT_MS);
        const done = <T>(f: (v: T) => void) => (v: T) => {
          clearTimeout(timer);
          f(v);
        };
        this.#waiting.push({ resolve: done(resolve), reject: done(reject), lines: [] });
        stream.send(`${how}\n`);
      });
    } catch {
      return readServiceState(this.#t, this.#unit);
    }
  }

  close(): void {
    this.#drop(new NodeError(this.#t.name, 'the state probe was closed'));
  }
}

/**
 * Opens a state probe on every node (channels on the existing connections).
 * `read` answers from the probe, or by a plain command once a probe is gone;
 * `close` ends them all.
 */
export function openServiceProbes(transports: ReadonlyMap<string, Transport>, unit: string): { read: StateReader; close(): void } {
  const probes = new Map<string, Probe>();
  return {
    read: (node, how = 'full') => {
      let p = probes.get(node);
      if (!p) {
        const t = transports.get(node);
        if (!t) return Promise.reject(new NodeError(node, 'not connected'));
        p = new Probe(t, unit);
        probes.set(node, p);
      }
      return p.read(how);
    },
    close: () => probes.forEach((p) => p.close()),
  };
}
