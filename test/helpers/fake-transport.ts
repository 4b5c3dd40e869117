import type { ExecResult, LineStream, Transport } from '../../src/transport/transport.js';

/** A scripted node for unit tests: each stream() call plays the next script of lines; exec answers by pattern. */
export class FakeTransport implements Transport {
  readonly name: string;
  readonly streams: string[] = [];
  readonly execs: string[] = [];
  /** When set, every stream fails to open with this error (a node that cannot be reached). */
  neverStarts: Error | null = null;
  /** What was sent to each stream's stdin, by stream index. */
  readonly sent: string[][] = [];
  #scripts: string[][];
  #exec: (command: string) => ExecResult;

  constructor(name: string, scripts: string[][], exec: (command: string) => ExecResult) {
    this.name = name;
    this.#scripts = scripts;
    this.#exec = exec;
  }

  async exec(command: string): Promise<ExecResult> {
    this.execs.push(command);
    return this.#exec(command);
  }

  stream(command: string): LineStream {
    this.streams.push(command);
    const sent: string[] = [];
    this.sent.push(sent);
    const lines = this.neverStarts ? [] : (this.#scripts.shift() ?? []);
    let closed = false;
    return {
      lines: {
        async *[Symbol.asyncIterator]() {
          for (const line of lines) {
            if (closed) return;
            yield line;
          }
        },
      },
      send: (text: string) => {
        sent.push(text);
        return !closed && this.neverStarts === null;
      },
      started: () => this.neverStarts === null,
      failure: () => this.neverStarts,
      close: () => {
        closed = true;
      },
    };
  }

  close(): void {}
}

/** `systemctl show` output for a running unit with the given invocation. */
export function showRunning(invocation: string): ExecResult {
  return { code: 0, stderr: '', stdout: Buffer.from(`ActiveState=active\nSubState=running\nNRestarts=0\nInvocationID=${invocation}\nMainPID=42\n`) };
}
