import { spawn } from 'node:child_process';
import type { ExecResult, LineStream, Transport } from '../../src/transport/transport.js';

/**
 * A Transport that runs commands on this machine with the real sh and
 * coreutils: the remote scripts (read, stage, commit) are exercised for real,
 * without a node. Only for scripts that touch paths the test gives them.
 */
export class LocalTransport implements Transport {
  readonly name = 'local';
  readonly commands: string[] = [];

  exec(command: string, opts: { stdin?: Buffer } = {}): Promise<ExecResult> {
    this.commands.push(command);
    return new Promise((resolve, reject) => {
      const child = spawn('sh', ['-c', command], { stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (d: Buffer) => out.push(d));
      child.stderr.on('data', (d: Buffer) => err.push(d));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }));
      child.stdin.end(opts.stdin ?? undefined);
    });
  }

  stream(): LineStream {
    throw new Error('LocalTransport does not stream');
  }

  close(): void {}
}
