import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectSsh, createSshContext, type SshTarget } from '../../src/transport/ssh.js';
import { ed25519Key } from '../helpers/ssh-key.js';

// An in-process SSH server standing in for a node whose sudo wants a password:
// `sudo -n` fails as sudo does, `sudo -S` takes the first stdin line. Each login
// user has its own password, so a password leaking between runs would fail sudo.
const { Server } = ssh2;
const passwords: Record<string, string> = { 'ops-a': 'pw-a', 'ops-b': 'pw-b' };
let server: InstanceType<typeof Server>;
let port = 0;
let dir = '';

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'rollout-ssh-context-'));
  server = new Server({ hostKeys: [ed25519Key()] }, (client) => {
    let user = '';
    client.on('authentication', (auth) => {
      user = auth.username;
      auth.accept();
    });
    client.on('session', (acceptSession) => {
      acceptSession().on('exec', (accept, _reject, info) => {
        const channel = accept();
        if (info.command.startsWith('sudo -k -n ')) {
          channel.stderr.write('sudo: a password is required\n');
          channel.exit(1);
          channel.end();
          return;
        }
        let input = '';
        channel.on('data', (d: Buffer) => (input += d.toString('utf8')));
        channel.on('end', () => {
          const ok = input.split('\n')[0] === passwords[user];
          if (!ok) channel.stderr.write('sudo: 1 incorrect password attempt\n');
          channel.exit(ok ? 0 : 1);
          channel.end();
        });
      });
    });
    client.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(() => {
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

function target(name: string, user: string, knownHosts: string, sudoPassword?: string): SshTarget {
  return {
    name, host: '127.0.0.1', port, user, knownHosts: path.join(dir, knownHosts), connectTimeoutMs: 5000, keepaliveMs: 5000,
    acceptNewHostKeys: true, ...(sudoPassword !== undefined ? { sudoPassword } : {}),
  };
}

describe('SshContext', () => {
  it('keeps each run\'s sudo passwords, questions and recorded host keys to itself', async () => {
    const asked: string[] = [];
    const a = createSshContext(async (prompt) => {
      asked.push(prompt);
      return 'pw-a';
    });
    const b = createSshContext(async () => {
      throw new Error('run b has its password in the inventory and must not ask');
    });
    const opened = [
      await connectSsh(target('a-1', 'ops-a', 'known_hosts_a'), a),
      await connectSsh(target('a-2', 'ops-a', 'known_hosts_a'), a),
      await connectSsh(target('b-1', 'ops-b', 'known_hosts_b', 'pw-b'), b),
    ];
    try {
      // One question per run for the same login user, whatever the number of nodes.
      expect(asked).toEqual(['sudo password for ops-a on the nodes: ']);
      expect(a.sudoPasswords).toEqual(['pw-a']);
      expect(b.sudoPasswords).toEqual(['pw-b']);
      // a-2 found the key a-1 recorded in the same run's known_hosts cache.
      expect(a.recordedHostKeys).toHaveLength(1);
      expect(a.recordedHostKeys[0]).toMatch(/^a-1: recorded the new host key of \[127\.0\.0\.1\]:\d+ \(ssh-ed25519 SHA256:.+\) in .*known_hosts_a/);
      expect(b.recordedHostKeys).toHaveLength(1);
      expect(b.recordedHostKeys[0]).toMatch(/^b-1: .* in .*known_hosts_b/);
      expect(readFileSync(path.join(dir, 'known_hosts_b'), 'utf8').split('\n').filter(Boolean)).toHaveLength(1);
    } finally {
      opened.forEach((t) => t.close());
    }
  });

  it('asks again in a new run: an answer is never carried over to the next context', async () => {
    const answers = ['wrong', 'pw-a'];
    const first = createSshContext(async () => answers.shift() ?? null);
    await expect(connectSsh(target('a-1', 'ops-a', 'known_hosts_c'), first)).rejects.toThrow(/refused the password for ops-a/);
    expect(first.sudoPasswords).toEqual(['wrong']);
    const second = createSshContext(async () => answers.shift() ?? null);
    const t = await connectSsh(target('a-1', 'ops-a', 'known_hosts_c'), second);
    t.close();
    expect(second.sudoPasswords).toEqual(['pw-a']);
    expect(second.recordedHostKeys).toEqual([]);
  });
});
