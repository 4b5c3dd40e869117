import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { openServiceProbes } from '../../src/rollout/service-probe.js';
import { stagedPath } from '../../src/agent/files.js';
import { sha256 } from '../../src/util/sha256.js';
import { LocalTransport } from '../helpers/local-transport.js';
import { countingServer, makeTls } from '../helpers/test-tls.js';

// The probe script runs here with the real sh; systemctl is a stand-in on PATH
// that reports the pid in $dir/main as the unit's main process and counts its calls.
let dir: string;
let main: ChildProcess;
let t: LocalTransport;

function startMain(): void {
  main = spawn('sleep', ['300'], { stdio: 'ignore' });
  writeFileSync(path.join(dir, 'main'), String(main.pid));
}
const calls = () => readFileSync(path.join(dir, 'calls'), 'utf8').trim().split('\n').filter(Boolean).length;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rollout-probe-'));
  writeFileSync(path.join(dir, 'calls'), '');
  writeFileSync(
    path.join(dir, 'systemctl'),
    `#!/bin/sh\necho call >> ${dir}/calls\npid=$(cat ${dir}/main)\nprintf 'ActiveState=active\\nSubState=running\\nNRestarts=0\\nInvocationID=inv-%s\\nMainPID=%s\\n' "$pid" "$pid"\n`,
  );
  chmodSync(path.join(dir, 'systemctl'), 0o755);
  t = new LocalTransport({ ...process.env, PATH: `${dir}:${process.env.PATH}` });
  startMain();
});
afterEach(() => main.kill('SIGKILL'));

describe('openServiceProbes', () => {
  it('every read asks systemd on the node, all through one channel, each answer the state it reported then', async () => {
    const probes = openServiceProbes(new Map([['kms-1', t]]), 'minkms');
    try {
      const first = await probes.read('kms-1');
      expect(first).toMatchObject({ activeState: 'active', invocationId: `inv-${main.pid}`, mainPid: main.pid });
      expect(await probes.read('kms-1')).toEqual(first);
      expect(calls()).toBe(2);

      // Another main process: the next read reports it.
      const old = main;
      old.kill('SIGKILL');
      await new Promise((r) => old.once('exit', r));
      startMain();
      expect((await probes.read('kms-1')).invocationId).toBe(`inv-${main.pid}`);
      expect(calls()).toBe(3);
      expect(t.commands).toHaveLength(1);
    } finally {
      probes.close();
    }
  });

  it('stages files through the probe, their contents on its stdin (lines that look like questions stay contents), then answers questions as before', async () => {
    const probes = openServiceProbes(new Map([['kms-1', t]]), 'minkms');
    try {
      const before = 'old: 1\n';
      const contents = ['full\nrelease\nready 0 x:1\nfull\n', 'stage\n\nlast line without newline'];
      const items = contents.map((after, i) => {
        const file = path.join(dir, `f${i}.yaml`);
        writeFileSync(file, before);
        const id = process.getuid!();
        return {
          change: { path: file, after, beforeSha256: sha256(Buffer.from(before)), afterSha256: sha256(Buffer.from(after)), uid: id, gid: process.getgid!(), mode: 0o640 },
          backup: path.join(dir, 'backups', `f${i}.yaml`),
          staged: stagedPath('20261127T000000Z-abcdef', file),
        };
      });
      expect(await probes.stage('kms-1', items)).toEqual(['staged', 'staged']);
      items.forEach((item, i) => expect(readFileSync(item.staged, 'utf8')).toBe(contents[i]));
      expect(t.commands).toHaveLength(1);
      expect(await probes.read('kms-1')).toMatchObject({ mainPid: main.pid });
      expect(calls()).toBe(1);
    } finally {
      probes.close();
    }
  });

  it('ready: by curl on the node until a kept connection is open, then over it; any answer but 200 there is asked by curl again, whose problem stands', async () => {
    const tlsDir = mkdtempSync(path.join(tmpdir(), 'rollout-probe-tls-'));
    makeTls(tlsDir);
    const server = await countingServer(tlsDir);
    const probes = openServiceProbes(new Map([['kms-1', t]]), 'minkms');
    const target = { host: `127.0.0.1:${server.port}`, ca: path.join(tlsDir, 'ca.pem'), insecure: false };
    try {
      expect(await probes.ready('kms-1', target)).toMatchObject({ ok: true, status: 200 });
      // Opened after curl's answer, in the background.
      await vi.waitFor(() => expect(probes.kept('kms-1', target)).toBe(true), { timeout: 10_000 });
      expect([server.connections, server.requests]).toEqual([2, 2]);
      expect(await probes.ready('kms-1', target)).toMatchObject({ ok: true, status: 200 });
      expect(await probes.ready('kms-1', target)).toMatchObject({ ok: true, status: 200 });
      expect([server.connections, server.requests, t.connects]).toEqual([2, 4, 1]);
      server.status = 503;
      const answer = await probes.ready('kms-1', target);
      expect(answer).toMatchObject({ ok: false, status: 503 });
      expect(answer.problem).toMatch(/^HTTP 503: .*not ready: test/);
      // The kept connection's 503, then curl's own (a new connection).
      expect([server.connections, server.requests]).toEqual([3, 6]);
    } finally {
      probes.close();
      await server.close();
    }
  });

  it('ready: a CA directory of plain PEM files (no OpenSSL hash links), as MinKMS reads it, is trusted by the real curl', async () => {
    const tlsDir = mkdtempSync(path.join(tmpdir(), 'rollout-probe-tls-'));
    makeTls(tlsDir);
    const cas = path.join(tlsDir, 'CAs');
    mkdirSync(cas);
    copyFileSync(path.join(tlsDir, 'ca.pem'), path.join(cas, 'internal-ca.crt'));
    writeFileSync(path.join(cas, 'notes.txt'), 'rotated yearly\n');
    const server = await countingServer(tlsDir);
    const probes = openServiceProbes(new Map([['kms-1', t]]), 'minkms');
    try {
      expect(await probes.ready('kms-1', { host: `127.0.0.1:${server.port}`, ca: cas, insecure: false })).toMatchObject({ ok: true, status: 200 });
      // The CA still decides: another CA's directory is refused.
      const other = mkdtempSync(path.join(tmpdir(), 'rollout-probe-tls-'));
      makeTls(other);
      mkdirSync(path.join(other, 'CAs'));
      copyFileSync(path.join(other, 'ca.pem'), path.join(other, 'CAs', 'ca.pem'));
      const refused = await probes.ready('kms-1', { host: `127.0.0.1:${server.port}`, ca: path.join(other, 'CAs'), insecure: false });
      expect(refused).toMatchObject({ ok: false, status: 0 });
      expect(refused.problem).toMatch(/curl exit 60/);
    } finally {
      probes.close();
      await server.close();
    }
  });
});
