// The unit's state on every node, asked many times per run (before each restart
// every other node is checked). An SSH session per question costs each node a
// fork and a PAM session; one long-lived channel per node that answers a line
// on stdin with `systemctl show` costs a single fork per question.
import { NodeError } from '../errors.js';
import type { LineStream, Transport } from '../transport/transport.js';
import { shellQuote } from '../util/shell-quote.js';
import { parseServiceState, readServiceState, SHOW_PROPERTIES, type ServiceState } from './journal.js';

/** Reads a node's unit state now. */
export type StateReader = (node: string) => Promise<ServiceState>;

/** One answer must come within this; otherwise the probe is dropped for a plain command. */
const ANSWER_TIMEOUT_MS = 30_000;

type Waiter = { resolve: (s: ServiceState) => void; reject: (e: Error) => void; lines: string[] };

// One node's probe: questions are answered in order, so waiters form a queue.
class Probe {
  readonly #t: Transport;
  readonly #unit: string;
  #stream: LineStream | null;
  readonly #waiting: Waiter[] = [];

  constructor(t: Transport, unit: string) {
    this.#t = t;
    this.#unit = unit;
    const script = `u=$1; while IFS= read -r _; do systemctl show -p ${SHOW_PROPERTIES} -- "$u"; echo @end; done`;
    this.#stream = t.stream(`sh -c ${shellQuote(script)} rollout-probe ${shellQuote(unit)}`, { input: true });
    void this.#read(this.#stream);
  }

  async #read(stream: LineStream): Promise<void> {
    try {
      for await (const line of stream.lines) {
        const head = this.#waiting[0];
        if (!head) continue;
        if (line !== '@end') {
          head.lines.push(line);
          continue;
        }
        this.#waiting.shift();
        head.resolve(parseServiceState(head.lines.join('\n')));
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
  async read(): Promise<ServiceState> {
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
        stream.send('?\n');
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
    read: (node) => {
      let p = probes.get(node);
      if (!p) {
        const t = transports.get(node);
        if (!t) return Promise.reject(new NodeError(node, 'not connected'));
        p = new Probe(t, unit);
        probes.set(node, p);
      }
      return p.read();
    },
    close: () => probes.forEach((p) => p.close()),
  };
}
