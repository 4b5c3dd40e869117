// The unit's state on every node, asked many times per run (before each restart
// every other node is checked). An SSH session per question costs each node a
// fork and a PAM session; one long-lived channel per node that answers a line
// on stdin with `systemctl show` costs a single fork per question.
import { NodeError } from '../errors.js';
import type { LineStream, Transport } from '../transport/transport.js';
import { shellQuote } from '../util/shell-quote.js';
import { parseServiceState, readServiceState, type ServiceState } from './journal.js';
import { releaseLock, releaseRequest, type ReleaseOptions } from './lock.js';
import { stageFiles, stageRequest, stageResults, type StageItem, type StageResult } from '../agent/files.js';
import { AGENT } from '../agent/scripts.js';
import { KeptApi } from './kept-api.js';

/** Reads a node's unit state now (systemctl show, on the node). */
export type StateReader = (node: string) => Promise<ServiceState>;

// The probe's questions and answers (`full`, `stage`, `release`, `ready`) are described in src/agent/state.sh.

/** How a node reaches its own KMS API: `host` as HOST:PORT (its --host), the CA to trust (a file or directory; null: the node's trust store), TLS unchecked when `insecure`. */
export type ApiTarget = { host: string; ca: string | null; insecure: boolean };

/** One answer of the node's KMS API (src/agent/ready.sh): `ok` on HTTP 200; `problem` says what else happened. */
export type ApiAnswer = { ok: boolean; status: number; text: string; problem: string };

/** Pure. The one parser of `@api RC CODE TEXT` lines (the ready verb and the probe's `ready` question). */
export function parseApiAnswer(line: string | undefined): ApiAnswer {
  if (line === '@api no-curl') return { ok: false, status: 0, text: '', problem: 'curl is not installed on the node, so its API cannot be asked' };
  const m = /^@api (\d+) (\d{3}) ?(.*)$/.exec(line ?? '');
  if (!m) return { ok: false, status: 0, text: '', problem: `no answer from the API check (${JSON.stringify((line ?? '').slice(0, 120))})` };
  const [rc, status, text] = [Number(m[1]), Number(m[2]), m[3]!];
  if (status === 200) return { ok: true, status, text, problem: '' };
  if (status === 0) return { ok: false, status, text, problem: `no HTTP answer (curl exit ${rc}${text ? `: ${text}` : ''})` };
  return { ok: false, status, text, problem: `HTTP ${status}${text ? `: ${text}` : ''}` };
}

/** Pure. The ready verb's arguments for `target` (see src/agent/ready.sh). */
export function apiArgs(what: 'ready' | 'version', target: ApiTarget, seconds = 0): string {
  return [what, target.host, target.ca ?? '', target.insecure ? '1' : '0', String(Math.max(0, Math.ceil(seconds)))].map(shellQuote).join(' ');
}

/**
 * Asks the node's own API by a plain command: `ready` polls /v1/health/ready
 * every 0.25 s for up to `seconds` until it answers 200; `version` asks
 * /version once. A lost link or an odd answer is a not-ok answer, never a throw.
 */
export async function askApi(t: Transport, what: 'ready' | 'version', target: ApiTarget, seconds = 0): Promise<ApiAnswer> {
  try {
    const r = await t.exec(`sh -c ${shellQuote(AGENT.ready)} rollout-ready ${apiArgs(what, target, seconds)}`, { timeoutMs: (seconds + 30) * 1000 });
    return parseApiAnswer(r.stdout.toString().split('\n').find((l) => l.startsWith('@api')));
  } catch (err) {
    return { ok: false, status: 0, text: '', problem: `cannot be asked (${(err as Error).message.replace(`${t.name}: `, '')})` };
  }
}

/** One answer must come within this; otherwise the probe is dropped for a plain command. */
const ANSWER_TIMEOUT_MS = 30_000;

type Waiter = { resolve: (s: ServiceState | null) => void; reject: (e: Error) => void; lines: string[]; release?: true; stage?: true; api?: true };

// One node's probe: questions are answered in order, so waiters form a queue.
class Probe {
  readonly #t: Transport;
  readonly #unit: string;
  #stream: LineStream | null;
  readonly #waiting: Waiter[] = [];
  readonly #api: KeptApi;

  constructor(t: Transport, unit: string) {
    this.#t = t;
    this.#unit = unit;
    this.#api = new KeptApi(t);
    this.#stream = t.stream(`sh -c ${shellQuote(AGENT.state)} rollout-probe ${shellQuote(unit)}`, { input: true });
    void this.#read(this.#stream);
  }

  async #read(stream: LineStream): Promise<void> {
    try {
      for await (const line of stream.lines) {
        const head = this.#waiting[0];
        if (!head) continue;
        if (head.api) {
          if (line.startsWith('@api')) {
            head.lines.push(line);
            this.#waiting.shift();
            head.resolve(null);
          }
          continue;
        }
        if (head.stage) {
          head.lines.push(line);
          if (line.startsWith('@stage-end ')) {
            this.#waiting.shift();
            head.resolve(null);
          }
          continue;
        }
        if (head.release) {
          if (line === '@released') {
            this.#waiting.shift();
            head.resolve(null);
          }
          continue;
        }
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
    try {
      const state = await this.#ask('full\n', {});
      if (state) return state;
    } catch {
      // the probe is gone: below
    }
    return readServiceState(this.#t, this.#unit);
  }

  /** Stages files through the probe (src/agent/state.sh); a plain command (stageFiles) when it cannot. */
  async stage(items: readonly StageItem[]): Promise<StageResult[]> {
    const request = stageRequest(items);
    if (this.#stream) {
      const lines: string[] = [];
      let answered = false;
      try {
        await this.#ask(`stage\n${request.toString('utf8')}`, { stage: true, lines });
        answered = true;
      } catch {
        // the probe is gone: below
      }
      if (answered) {
        const code = Number(lines.at(-1)?.slice('@stage-end '.length));
        return stageResults(this.#t.name, items, lines, code, '');
      }
    }
    return stageFiles(this.#t, items);
  }

  /**
   * One request to the node's /v1/health/ready: a 200 over the kept connection
   * (KeptApi) when one is open; else, and for any other answer, through the
   * probe (src/agent/state.sh), or a plain command (askApi) when it cannot.
   * A 200 asked that way opens the kept connection for the next question.
   */
  async ready(target: ApiTarget): Promise<ApiAnswer> {
    if (this.#api.warm(target) && (await this.#api.ready(target))) return { ok: true, status: 200, text: '', problem: '' };
    const answer = await this.#askReady(target);
    // Opened after the answer, off this question's path; the next comes a turn later.
    if (answer.ok) this.#api.warmUp(target);
    return answer;
  }

  /** Whether a ready question now goes over the kept connection (one HTTP request). */
  kept(target: ApiTarget): boolean {
    return this.#api.warm(target);
  }

  async #askReady(target: ApiTarget): Promise<ApiAnswer> {
    if (/[\s]/.test(target.host) || /[\n\r]/.test(target.ca ?? '')) return askApi(this.#t, 'ready', target);
    const lines: string[] = [];
    try {
      await this.#ask(`ready ${target.insecure ? 1 : 0} ${target.host} ${target.ca ?? ''}\n`, { api: true, lines });
      return parseApiAnswer(lines[0]);
    } catch {
      // the probe is gone: below
    }
    return askApi(this.#t, 'ready', target);
  }

  /** Releases the lock through the probe (src/agent/state.sh); a plain command when it cannot. */
  async release(runId: string, opts: ReleaseOptions): Promise<void> {
    try {
      return void (await this.#ask(`release\n${releaseRequest(runId, opts)}`, { release: true }));
    } catch {
      // the probe is gone: below
    }
    await releaseLock(this.#t, runId, opts);
  }

  // One question; rejects when the probe is gone or does not answer in time.
  #ask(question: string, kind: { release?: true; stage?: true; api?: true; lines?: string[] }): Promise<ServiceState | null> {
    const stream = this.#stream;
    if (!stream) return Promise.reject(new NodeError(this.#t.name, 'the state probe ended'));
    return new Promise<ServiceState | null>((resolve, reject) => {
      const timer = setTimeout(() => this.#drop(new NodeError(this.#t.name, 'the state probe did not answer')), ANSWER_TIMEOUT_MS);
      const done = <T>(f: (v: T) => void) => (v: T) => {
        clearTimeout(timer);
        f(v);
      };
      this.#waiting.push({ resolve: done(resolve), reject: done(reject), ...kind, lines: kind.lines ?? [] });
      stream.send(question);
    });
  }

  close(): void {
    this.#api.close();
    this.#drop(new NodeError(this.#t.name, 'the state probe was closed'));
  }
}

/** The state probes of a run's nodes (see openServiceProbes). */
export type ServiceProbes = {
  /** Opens `node`'s probe now if it is not open (its SSH session costs the node now, not at the first question). */
  open(node: string): void;
  read: StateReader;
  stage(node: string, items: readonly StageItem[]): Promise<StageResult[]>;
  release(node: string, runId: string, opts: ReleaseOptions): Promise<void>;
  /** One request to `node`'s own /v1/health/ready (see ApiTarget), no polling. */
  ready(node: string, target: ApiTarget): Promise<ApiAnswer>;
  /** Whether `ready` would now ask `node` over its kept connection (see KeptApi). */
  kept(node: string, target: ApiTarget): boolean;
  close(): void;
};

/**
 * Opens a state probe on every node of `transports` now (channels on the
 * existing connections); a node added to the map later gets one at `open` or
 * at its first question.
 * `read` answers from the probe, or by a plain command once a probe is gone;
 * `stage` stages files (stageFiles) the same way; `release` releases a node's
 * lock (releaseLock) the same way; `ready` asks a node's own API
 * (askApi) the same way; `close` ends them all.
 */
export function openServiceProbes(transports: ReadonlyMap<string, Transport>, unit: string): ServiceProbes {
  // All open at once (their SSH sessions cost the nodes now, not at the first question).
  const probes = new Map([...transports].map(([node, t]) => [node, new Probe(t, unit)] as const));
  const probe = (node: string): Probe => {
    let p = probes.get(node);
    if (!p) {
      const t = transports.get(node);
      if (!t) throw new NodeError(node, 'not connected');
      p = new Probe(t, unit);
      probes.set(node, p);
    }
    return p;
  };
  return {
    open: (node) => void probe(node),
    read: async (node) => probe(node).read(),
    stage: async (node, items) => probe(node).stage(items),
    release: async (node, runId, opts) => probe(node).release(runId, opts),
    ready: async (node, target) => probe(node).ready(target),
    kept: (node, target) => probe(node).kept(target),
    close: () => probes.forEach((p) => p.close()),
  };
}
