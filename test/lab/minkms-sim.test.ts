// The simulated MinKMS (lab/minkms-sim.mjs) run on this machine: its HTTPS API
// must answer as minkms-cluster.md says MinKMS does, before and after its ready
// line, with the lab knobs that bend it, and ?write across a two-node cluster;
// and its admin CLI (stat, ls, backup) must see a sim cluster as MinKMS's does.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeTls } from '../helpers/test-tls.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SIM = path.join(REPO, 'lab/minkms-sim.mjs');
const READY_LINE = 'Server is up and running';

let dir: string;
let ca: string;
/** The test clusters' admin API key (made per run) and its identity, as lab.sh seeds them. */
let adminKey: string;
let adminIdentity: string;
const children: ChildProcess[] = [];

/** A port nothing listens on right now (the kernel's pick). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

type Sim = { child: ChildProcess; port: number; output: () => string; exited: Promise<number | null> };

/** Starts the sim on 127.0.0.1:port with its own knobs and volume; `cluster` is written to VOLUME/.lab-cluster. */
function startSim(name: string, port: number, opts: { knobs?: Record<string, string>; cluster?: number[]; config?: string } = {}): Sim {
  const home = path.join(dir, `${name}-${port}`);
  mkdirSync(path.join(home, 'knobs'), { recursive: true });
  mkdirSync(path.join(home, 'vol'), { recursive: true });
  for (const [k, v] of Object.entries({ 'start-delay-ms': '0', ...opts.knobs })) writeFileSync(path.join(home, 'knobs', k), v);
  if (opts.cluster) writeFileSync(path.join(home, 'vol', '.lab-cluster'), opts.cluster.map((p) => `127.0.0.1:${p}\n`).join(''));
  const config = path.join(home, 'config.yaml');
  writeFileSync(config, opts.config ?? `version: v1
# test node
admin:
  identity: ${adminIdentity}   # admin identity
tls:
  certs:
    - key: ${path.join(dir, 'private.key')}
      cert: ${path.join(dir, 'public.crt')}
  ca: ${path.join(dir, 'CAs')}
`);
  const child = spawn(process.execPath, [SIM, 'server', path.join(home, 'vol'), '--host', `127.0.0.1:${port}`, '--config', config], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      LAB_KNOBS_DIR: path.join(home, 'knobs'),
      LAB_YAML_DIR: path.join(REPO, 'node_modules/yaml'),
      MINIO_KMS_HSM_KEY: 'hsm:aes256:c2ltdWxhdGVkLWxhYi1rZXktMzItYnl0ZXMtbG9uZyE=',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, port, output: () => out, exited };
}

/** Resolves once the sim printed `text` (bounded); rejects if it exits first. */
function waitForOutput(sim: Sim, text: string, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the sim never printed ${text}:\n${sim.output()}`)), timeoutMs);
    const check = () => {
      if (!sim.output().includes(text)) return;
      clearTimeout(timer);
      resolve();
    };
    sim.child.stdout!.on('data', check);
    sim.child.stderr!.on('data', check);
    void sim.exited.then((code) => setTimeout(() => { clearTimeout(timer); reject(new Error(`the sim exited (${code}):\n${sim.output()}`)); }, 0));
    check();
  });
}

type Answer = { status: number; body: string };

/** One GET over HTTPS trusting only the temp CA; rejects with the socket error (e.g. ECONNREFUSED). */
function get(port: number, apiPath: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: apiPath, ca, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Asks /v1/health/live until it answers (the listener comes up early in the start; bounded). */
async function waitForListener(sim: Sim, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const why = await get(sim.port, '/v1/health/live').then((a) => (a.status === 200 ? undefined : `HTTP ${a.status}`), (e: unknown) => String(e));
    if (why === undefined) return;
    if (Date.now() > deadline) throw new Error(`the sim never answered live on ${sim.port}: ${why}\n${sim.output()}`);
    await new Promise<void>((r) => setImmediate(r));
  }
}

const message = (a: Answer) => (JSON.parse(a.body) as { message?: unknown }).message;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'minkms-sim-test-'));
  adminKey = `k1:${randomBytes(32).toString('base64url')}`;
  adminIdentity = `h1:${createHash('sha256').update(adminKey).digest('base64url')}`;
  makeTls(dir);
  ca = readFileSync(path.join(dir, 'ca.pem'), 'utf8');
  // tls.ca as the lab has it: a directory holding the CA.
  mkdirSync(path.join(dir, 'CAs'));
  writeFileSync(path.join(dir, 'CAs', 'ca.pem'), ca);
});
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('minkms-sim HTTPS API', () => {
  it('before the ready line: live and version 200, ready and ?write 503 with a message, others 404', async () => {
    const sim = startSim('early', await freePort(), { knobs: { 'start-delay-ms': '600000' } });
    await waitForListener(sim);
    expect(sim.output()).not.toContain(READY_LINE);
    const version = await get(sim.port, '/version');
    expect(version.status).toBe(200);
    expect(JSON.parse(version.body)).toEqual({ version: expect.stringMatching(/^2025-/) });
    const ready = await get(sim.port, '/v1/health/ready');
    expect(ready.status).toBe(503);
    expect(message(ready)).toEqual(expect.stringContaining('not ready'));
    expect((await get(sim.port, '/v1/health/ready?write')).status).toBe(503);
    const other = await get(sim.port, '/v1/keys');
    expect(other.status).toBe(404);
    expect(typeof message(other)).toBe('string');
  });

  it('after the ready line: ready 200, live 200, version 200, others 404', async () => {
    const sim = startSim('ready', await freePort());
    await waitForOutput(sim, READY_LINE);
    expect((await get(sim.port, '/v1/health/ready')).status).toBe(200);
    expect((await get(sim.port, '/v1/health/live')).status).toBe(200);
    expect((await get(sim.port, '/version')).status).toBe(200);
    expect((await get(sim.port, '/v1/health/metricz')).status).toBe(404);
  });

  it('?write is 200 only when every other member answers live', async () => {
    const [a, b] = [await freePort(), await freePort()];
    const simA = startSim('a', a, { cluster: [a, b] });
    await waitForOutput(simA, READY_LINE);
    expect((await get(a, '/v1/health/ready')).status).toBe(200);
    const alone = await get(a, '/v1/health/ready?write');
    expect(alone.status).toBe(503);
    expect(message(alone)).toEqual(expect.stringContaining(`127.0.0.1:${b}`));
    const simB = startSim('b', b, { cluster: [a, b], knobs: { 'start-delay-ms': '600000' } });
    await waitForListener(simB);
    // B is live though not ready: writes need its liveness only, as for A's own answer.
    expect((await get(a, '/v1/health/ready?write')).status).toBe(200);
    expect((await get(b, '/v1/health/ready?write')).status).toBe(503);
  });

  it('knob ready-503: the ready line comes, but ready (and ?write) answer 503; live stays 200', async () => {
    const sim = startSim('r503', await freePort(), { knobs: { 'ready-503': '' } });
    await waitForOutput(sim, READY_LINE);
    const ready = await get(sim.port, '/v1/health/ready');
    expect(ready.status).toBe(503);
    expect(message(ready)).toEqual(expect.stringContaining('ready-503'));
    expect((await get(sim.port, '/v1/health/ready?write')).status).toBe(503);
    expect((await get(sim.port, '/v1/health/live')).status).toBe(200);
  });

  it('knob api-log: a line per request naming its connection, its User-Agent and its path', async () => {
    const sim = startSim('apilog', await freePort(), { knobs: { 'api-log': '' } });
    await waitForOutput(sim, READY_LINE);
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const ask = (p: string, headers: Record<string, string> = {}) => new Promise<void>((resolve, reject) => {
      https.get({ host: '127.0.0.1', port: sim.port, path: p, ca, agent, headers }, (res) => res.resume().on('end', resolve)).on('error', reject);
    });
    await ask('/v1/health/ready', { 'User-Agent': 'rollout' });
    await ask('/v1/health/ready?write');
    agent.destroy();
    await get(sim.port, '/version');
    const log = readFileSync(path.join(dir, `apilog-${sim.port}`, 'vol', '.lab-api-log'), 'utf8');
    const pid = sim.child.pid!;
    expect(log).toBe(`${pid}.1 rollout /v1/health/ready\n${pid}.1 - /v1/health/ready?write\n${pid}.2 - /version\n`);
  });

  it('knob no-https: the ready line comes, nothing listens (the same start without it does)', async () => {
    const sim = startSim('nohttps', await freePort(), { knobs: { 'no-https': '' } });
    const plain = startSim('plain', await freePort());
    await waitForOutput(sim, READY_LINE);
    await waitForOutput(plain, READY_LINE);
    await expect(get(sim.port, '/v1/health/live')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect((await get(plain.port, '/v1/health/live')).status).toBe(200);
  });

  it('a key it cannot read, or a port in use: a warning, no API, and the start still reaches its ready line', async () => {
    const noKey = startSim('nokey', await freePort(), {
      config: `version: v1\ntls:\n  certs:\n    - key: ${path.join(dir, 'missing.key')}\n      cert: ${path.join(dir, 'public.crt')}\n`,
    });
    await waitForOutput(noKey, READY_LINE);
    expect(noKey.output()).toContain(`Warning: HTTPS API not served: failed to load TLS private key: open ${path.join(dir, 'missing.key')}: no such file or directory`);
    await expect(get(noKey.port, '/v1/health/live')).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    const first = startSim('first', await freePort());
    await waitForOutput(first, READY_LINE);
    const second = startSim('second', first.port);
    await waitForOutput(second, READY_LINE);
    expect(second.output()).toContain(`Warning: HTTPS API not served: listen tcp 127.0.0.1:${first.port}: bind: address already in use`);
  });
});

type CliResult = { code: number | null; stdout: string; stderr: string };

/**
 * Runs `minkms CMD ARGS` (the sim's CLI) against https://127.0.0.1:port, trusting the temp CA by
 * SSL_CERT_FILE and holding the admin key in MINIO_KMS_API_KEY; `env` overrides (undefined removes).
 */
function cli(port: number, args: string[], env: Record<string, string | undefined> = {}, cwd?: string): Promise<CliResult> {
  const merged: Record<string, string | undefined> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    MINIO_KMS_SERVER: `https://127.0.0.1:${port}`,
    MINIO_KMS_API_KEY: adminKey,
    SSL_CERT_FILE: path.join(dir, 'ca.pem'),
    ...env,
  };
  const childEnv = Object.fromEntries(Object.entries(merged).filter((e): e is [string, string] => e[1] !== undefined));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SIM, ...args], { env: childEnv, cwd: cwd ?? dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

type NodeStatus = {
  version: string; address: string; state: string; commit: number; nodes: Record<string, string>;
  node_id: number; leader_id: number; sys_uptime: string;
};
type ClusterStatus = { nodes_up: Record<string, NodeStatus>; nodes_down: Record<string, string> };

/** `minkms stat --json` from the sim on port: exit 0 and one line of JSON, parsed. */
async function stat(port: number): Promise<ClusterStatus> {
  const r = await cli(port, ['stat', '--json']);
  expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
  expect(r.stdout.endsWith('\n') && !r.stdout.trimEnd().includes('\n')).toBe(true);
  return JSON.parse(r.stdout) as ClusterStatus;
}

/** The IDs of the up nodes that say they lead, and the leader_id every up node names. */
function leaders(s: ClusterStatus): { leading: string[]; named: number[] } {
  const up = Object.entries(s.nodes_up);
  return { leading: up.filter(([, n]) => n.state === 'Leader').map(([id]) => id), named: [...new Set(up.map(([, n]) => n.leader_id))] };
}

const addr = (port: number) => `127.0.0.1:${port}`;

/** Starts the sims of ports in turn, each once the one before is ready (so their start order is theirs). */
async function startCluster(ports: number[], knobs: Record<number, Record<string, string>> = {}): Promise<Sim[]> {
  const sims: Sim[] = [];
  for (const [i, port] of ports.entries()) {
    const sim = startSim(`n${i}`, port, { cluster: ports, knobs: knobs[port] });
    await waitForOutput(sim, READY_LINE);
    sims.push(sim);
  }
  return sims;
}

describe('minkms-sim cluster administration (stat, ls, backup)', () => {
  it('stat --json: all up with one leader; a stopped leader is down and the oldest survivor leads; restarted, it follows', async () => {
    const ports = [await freePort(), await freePort(), await freePort()];
    const [a, b, c] = ports as [number, number, number];
    const sims = await startCluster(ports);

    const all = await stat(b);
    const members = { 0: addr(a), 1: addr(b), 2: addr(c) };
    expect(all.nodes_down).toEqual({});
    expect(Object.keys(all.nodes_up)).toEqual(['0', '1', '2']);
    for (const [id, n] of Object.entries(all.nodes_up)) {
      expect(n).toMatchObject({ address: members[Number(id) as 0 | 1 | 2], node_id: Number(id), nodes: members, leader_id: 0 });
      expect(n.sys_uptime).toMatch(/^\d+s$/);
      expect(n.version).toMatch(/^2025-/);
    }
    expect(leaders(all)).toEqual({ leading: ['0'], named: [0] });
    // Every member sees the same leader.
    expect(leaders(await stat(c))).toEqual({ leading: ['0'], named: [0] });

    // ls --json has the same shape.
    const ls = await cli(a, ['ls', '--json']);
    expect(ls.code).toBe(0);
    expect(Object.keys((JSON.parse(ls.stdout) as ClusterStatus).nodes_up)).toEqual(['0', '1', '2']);

    sims[0]!.child.kill('SIGTERM');
    await sims[0]!.exited;
    for (const port of [b, c]) {
      const s = await stat(port);
      expect(s.nodes_down).toEqual({ 0: addr(a) });
      expect(Object.keys(s.nodes_up)).toEqual(['1', '2']);
      expect(s.nodes_up['1']!.nodes).toEqual(members);
      expect(leaders(s)).toEqual({ leading: ['1'], named: [1] });
    }
    const table = await cli(b, ['stat']);
    expect(table.code).toBe(0);
    const rows = table.stdout.trimEnd().split('\n').map((l) => l.split(/\s+/));
    expect(rows).toEqual([
      ['ID', 'ADDRESS', 'STATUS', 'ROLE', 'UPTIME'],
      ['0', addr(a), 'offline', '-', '-'],
      ['1', addr(b), 'online', 'leader', expect.stringMatching(/^(\d+[hms])+$/)],
      ['2', addr(c), 'online', 'follower', expect.stringMatching(/^(\d+[hms])+$/)],
    ]);

    const again = startSim('n0', a, { cluster: ports });
    await waitForOutput(again, READY_LINE);
    for (const port of [a, b]) {
      const s = await stat(port);
      expect(s.nodes_down).toEqual({});
      expect(s.nodes_up['0']).toMatchObject({ state: 'Follower', leader_id: 1 });
      expect(leaders(s)).toEqual({ leading: ['1'], named: [1] });
    }
  });

  it('knob drop-membership: the others leave the node out entirely; it sees a single-node cluster of itself', async () => {
    const ports = [await freePort(), await freePort(), await freePort()];
    const [a, b, c] = ports as [number, number, number];
    await startCluster(ports, { [c]: { 'drop-membership': '' } });
    // Still a node that serves: only its membership is gone.
    expect(JSON.parse((await get(c, '/v1/lab/node')).body)).toMatchObject({ address: addr(c), member: false, ready: true });

    for (const port of [a, b]) {
      const s = await stat(port);
      expect(Object.keys(s.nodes_up)).toEqual(['0', '1']);
      expect(s.nodes_down).toEqual({});
      expect(s.nodes_up['0']!.nodes).toEqual({ 0: addr(a), 1: addr(b) });
      expect(leaders(s)).toEqual({ leading: ['0'], named: [0] });
    }
    const alone = await stat(c);
    expect(alone).toEqual({
      nodes_up: { 0: expect.objectContaining({ address: addr(c), node_id: 0, state: 'Leader', leader_id: 0, nodes: { 0: addr(c) } }) },
      nodes_down: {},
    });
  });

  it('the admin key: a wrong one is refused (401) and a non-k1 one (400), none shows in any output; no key at all is an error', async () => {
    const sim = startSim('auth', await freePort());
    await waitForOutput(sim, READY_LINE);
    const wrongKey = `k1:${randomBytes(32).toString('base64url')}`;

    // -a wins over the right key in the environment.
    const wrong = await cli(sim.port, ['stat', '--json', '-a', wrongKey]);
    expect(wrong).toEqual({ code: 1, stdout: '', stderr: 'Error: not authorized: invalid API key\n' });
    const attached = await cli(sim.port, ['stat', `--api-key=${wrongKey}`]);
    expect(attached).toEqual({ code: 1, stdout: '', stderr: 'Error: not authorized: invalid API key\n' });
    const badFormat = await cli(sim.port, ['ls'], { MINIO_KMS_API_KEY: 'not-a-key-3f9a' });
    expect(badFormat).toEqual({ code: 1, stdout: '', stderr: 'Error: invalid API key format\n' });
    const noKey = await cli(sim.port, ['stat'], { MINIO_KMS_API_KEY: undefined });
    expect(noKey).toEqual({ code: 1, stdout: '', stderr: 'Error: no API key: use --api-key or set MINIO_KMS_API_KEY\n' });

    const fine = await cli(sim.port, ['stat', '--json']);
    expect(fine.code).toBe(0);
    for (const r of [wrong, attached, badFormat, noKey, fine]) {
      for (const secret of [wrongKey, adminKey, wrongKey.slice(3), adminKey.slice(3), 'not-a-key-3f9a']) {
        expect(r.stdout + r.stderr).not.toContain(secret);
      }
    }
    expect(sim.output()).not.toContain(adminKey.slice(3));
    expect(sim.output()).not.toContain(wrongKey.slice(3));

    // The API itself: admin endpoints need the key; the lab-internal node info does not.
    const bare = await get(sim.port, '/v1/cluster/status');
    expect(bare.status).toBe(401);
    expect(message(bare)).toBe('not authorized: invalid API key');
    expect((await get(sim.port, '/v1/cluster/backup')).status).toBe(401);
    expect(JSON.parse((await get(sim.port, '/v1/lab/node')).body)).toEqual({
      address: addr(sim.port), version: expect.any(String), started_ms: expect.any(Number), member: true, ready: true,
    });
  });

  it('TLS trust as Go: SSL_CERT_FILE and/or SSL_CERT_DIR, -k skips it; a refused connection is worded as Go', async () => {
    const sim = startSim('trust', await freePort());
    await waitForOutput(sim, READY_LINE);
    const untrusted = await cli(sim.port, ['stat'], { SSL_CERT_FILE: '/dev/null' });
    expect(untrusted).toEqual({ code: 1, stdout: '', stderr: 'Error: tls: failed to verify certificate: x509: certificate signed by unknown authority\n' });
    expect((await cli(sim.port, ['stat', '-k'], { SSL_CERT_FILE: '/dev/null' })).code).toBe(0);
    expect((await cli(sim.port, ['stat'], { SSL_CERT_FILE: '/dev/null', SSL_CERT_DIR: path.join(dir, 'CAs') })).code).toBe(0);

    const closed = await freePort();
    const refused = await cli(closed, ['stat']);
    expect(refused).toEqual({ code: 1, stdout: '', stderr: `Error: dial tcp 127.0.0.1:${closed}: connect: connection refused\n` });
  });

  it('backup: writes a gzip of JSON 0600 (default name YYYYMMDD_HHMMSS_kms.db.gzip, or FILE) and prints its name', async () => {
    const ports = [await freePort(), await freePort()];
    await startCluster(ports);
    const cwd = mkdtempSync(path.join(dir, 'backup-'));

    const r = await cli(ports[0]!, ['backup'], {}, cwd);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const name = r.stdout.trimEnd();
    expect(name).toMatch(/^\d{8}_\d{6}_kms\.db\.gzip$/);
    expect(readdirSync(cwd)).toEqual([name]);
    expect(statSync(path.join(cwd, name)).mode & 0o777).toBe(0o600);
    const snapshot = JSON.parse(gunzipSync(readFileSync(path.join(cwd, name))).toString('utf8')) as Record<string, unknown>;
    expect(snapshot).toMatchObject({ cluster_id: expect.any(String), members: { 0: addr(ports[0]!), 1: addr(ports[1]!) } });

    const named = await cli(ports[1]!, ['backup', 'mine.gz'], {}, cwd);
    expect(named).toEqual({ code: 0, stdout: 'mine.gz\n', stderr: '' });
    expect(statSync(path.join(cwd, 'mine.gz')).mode & 0o777).toBe(0o600);
    expect(() => gunzipSync(readFileSync(path.join(cwd, 'mine.gz')))).not.toThrow();
    expect(readdirSync(cwd).sort()).toEqual([name, 'mine.gz'].sort());
  });

  it('knob backup-fail: backup exits 1 with its message and leaves no file', async () => {
    const sim = startSim('bfail', await freePort(), { knobs: { 'backup-fail': '' } });
    const told = startSim('bfail-msg', await freePort(), { knobs: { 'backup-fail': 'backup failed: disk full\n' } });
    await waitForOutput(sim, READY_LINE);
    await waitForOutput(told, READY_LINE);
    const cwd = mkdtempSync(path.join(dir, 'bfail-'));
    expect(await cli(sim.port, ['backup'], {}, cwd)).toEqual({
      code: 1, stdout: '', stderr: 'Error: backup failed: simulated (lab knob backup-fail)\n',
    });
    expect(await cli(told.port, ['backup', 'x.gz'], {}, cwd)).toEqual({ code: 1, stdout: '', stderr: 'Error: backup failed: disk full\n' });
    expect(readdirSync(cwd)).toEqual([]);
    // Status still works on such a node.
    expect(Object.keys((await stat(sim.port)).nodes_up)).toEqual(['0']);
  });
});
