import type { ExecResult, LineStream, Transport } from '../../src/transport/transport.js';

/** A scripted node for unit tests: each stream() call plays the next script of lines; exec answers by pattern. */
export class FakeTransport implements Transport {
  readonly name: string;
  readonly streams: string[] = [];
  readonly execs: string[] = [];
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
    const lines = this.#scripts.shift() ?? [];
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
