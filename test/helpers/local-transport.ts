import { spawn } from 'node:child_process';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { NodeError } from '../../src/errors.js';
import type { ExecResult, LineStream, Transport } from '../../src/transport/transport.js';
import { LineQueue } from '../../src/util/line-queue.js';

/**
 * A Transport that runs commands on this machine with the real sh and
 * coreutils: the remote scripts (read, stage, commit) are exercised for real,
 * without a node. Only for scripts that touch paths the test gives them.
 */
export class LocalTransport implements Transport {
  readonly name = 'local';
  readonly commands: string[] = [];

  readonly env: NodeJS.ProcessEnv;

  /** `env`: the commands' environment (a PATH with stand-ins for systemctl, say). */
  constructor(env: NodeJS.ProcessEnv = process.env) {
    this.env = env;
  }

  exec(command: string, opts: { stdin?: Buffer; onStdout?: (chunk: Buffer) => void } = {}): Promise<ExecResult> {
    this.commands.push(command);
    return new Promise((resolve, reject) => {
      const child = spawn('sh', ['-c', command], { stdio: ['pipe', 'pipe', 'pipe'], env: this.env });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (d: Buffer) => {
        out.push(d);
        opts.onStdout?.(d);
      });
      child.stderr.on('data', (d: Buffer) => err.push(d));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }));
      child.stdin.end(opts.stdin ?? undefined);
    });
  }

  stream(command: string, opts: { input?: boolean } = {}): LineStream {
    this.commands.push(command);
    const child = spawn('sh', ['-c', command], { stdio: ['pipe', 'pipe', 'ignore'], env: this.env });
    if (!opts.input) child.stdin.end();
    const queue = new LineQueue();
    child.stdout.on('data', (d: Buffer) => queue.push(d));
    child.on('close', () => queue.end());
    return {
      lines: queue.lines,
      send: (text) => {
        if (!opts.input || queue.ended) return false;
        child.stdin.write(text);
        return true;
      },
      started: () => true,
      failure: () => null,
      close: () => {
        child.kill('SIGTERM');
      },
    };
  }

  /** Every host is this machine (as every kms-N is 127.0.0.1 in the lab); counts its calls in `connects`. */
  connect(_host: string, port: number): Promise<Duplex> {
    this.connects++;
    return new Promise((resolve, reject) => {
      // Half-open, as an SSH channel: the far end's EOF leaves this side open until it ends.
      const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      s.once('connect', () => resolve(s));
      s.once('error', (err) => reject(new NodeError(this.name, `cannot connect to port ${port} (${err.message})`)));
    });
  }

  connects = 0;

  close(): void {}
}
