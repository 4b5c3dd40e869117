// The apply step end to end on three in-memory nodes: outcomes asserted through
// the run record, the nodes' files and units, and the exit code.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { runApply, type ApplyHooks } from '../../src/session/run-apply.js';
import { EXIT } from '../../src/exit-codes.js';
import { InterruptedError, RolloutError, RolloutFailedError, PreflightError } from '../../src/errors.js';
import type { RunState } from '../../src/state/run-state.js';
import { sha256 } from '../../src/util/sha256.js';
import { MemoryFleet, type MemoryNode } from '../helpers/memory-fleet.js';
import { runPreflight } from '../../src/preflight/run-preflight.js';
import { checksPassed, renderChecks } from '../../src/preflight/check.js';

const NAMES = ['kms-1', 'kms-2', 'kms-3'];
const ENV = '/etc/default/minkms';
const CONFIG = '/etc/minkms/config.yaml';
const OLD_CONFIG = 'version: v1\nadmin:\n  identity: h1:abc\n';

let dir: string;
let inventory: string;
let fleet: MemoryFleet;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rollout-orchestration-'));
  writeFileSync(path.join(dir, 'id'), 'not a key\n', { mode: 0o600 });
  writeFileSync(path.join(dir, 'known_hosts'), '');
  inventory = path.join(dir, 'inventory.yaml');
  writeFileSync(inventory, `version: v1
ssh:
  user: root
  identityFile: ${path.join(dir, 'id')}
  knownHosts: ${path.join(dir, 'known_hosts')}
nodes:
${NAMES.map((n, i) => `  - { name: ${n}, host: 127.0.0.1, port: ${2201 + i} }`).join('\n')}
vars:
  vault:
    server: https://vault.example.net:8200
    approle:
      id: role-4c1f
      secret: secret-id-7f3a9c1e
    transit:
      key: aistor-key-manager-hsm
  disableLocalHsm: false
`);
  process.env.ROLLOUT_STATE_DIR = path.join(dir, 'state');
  fleet = new MemoryFleet(NAMES, '=> Server is up and running');
  for (const n of fleet.nodes.values()) {
    n.write(ENV, `MINIO_KMS_HSM_KEY=hsm:aes256:abc\nMINIO_KMS_OPTS="--config ${CONFIG}"\n`);
    n.write(CONFIG, OLD_CONFIG);
  }
});

type Run = { code: number | null; error: unknown; lines: string[] };

// The apply step as the CLI drives it, with the CLI's exit-code mapping for what it throws.
async function apply(opts: { resume?: boolean; preflight?: boolean; order?: 'inventory' | 'leader-last'; interrupt?: (fire: () => void) => void; onEvent?: (name: string, data: Record<string, unknown>, fire: () => void) => void } = {}): Promise<Run> {
  const lines: string[] = [];
  let handler: (() => void) | null = null;
  let hardStop: (code: number) => void = () => undefined;
  const hooks: ApplyHooks = {
    view: { mode: 'json', useRedactor: () => undefined, out: (t) => lines.push(t), result: (t) => lines.push(t), err: (t) => lines.push(t), event: (name, data = {}) => opts.onEvent?.(name, data, () => handler?.()) },
    showPlan: () => undefined,
    // The real checks where asked (Vault's skipped), failing as the CLI's checkSession does.
    preflight: async (session, f) => {
      if (!opts.preflight) return;
      const checks = await runPreflight(session, f);
      lines.push(renderChecks(checks));
      if (!checksPassed(checks)) throw new PreflightError(checks.filter((c) => c.status === 'fail').map((c) => `${c.scope}: ${c.name}: ${c.detail}`));
    },
    confirm: async () => undefined,
    progress: 'silent',
    onInterrupt: (h) => {
      handler = h;
      return () => (handler = null);
    },
    onHardStop: () => hardStop(EXIT.interrupted),
    connect: fleet.connect,
  };
  opts.interrupt?.(() => handler?.());
  const stopped = new Promise<number>((resolve) => (hardStop = resolve));
  try {
    const code = await Promise.race([runApply(inventory, { yes: true, skipVaultChecks: true, resume: opts.resume === true, ...(opts.order ? { order: opts.order } : {}) }, hooks), stopped]);
    return { code, error: null, lines };
  } catch (err) {
    if (!(err instanceof RolloutError)) throw err;
    const code = err instanceof RolloutFailedError ? (err.restored ? EXIT.rolledBack : EXIT.rollbackFailed) : err instanceof InterruptedError ? EXIT.interrupted : err instanceof PreflightError ? EXIT.preflightFailed : 1;
    return { code, error: err, lines };
  }
}

function record(): RunState {
  const runs = path.join(dir, 'state', 'inventory', 'runs');
  const [file] = readdirSync(runs).filter((f) => f.endsWith('.json')).sort().reverse();
  return JSON.parse(readFileSync(path.join(runs, file!), 'utf8')) as RunState;
}

const steps = () => Object.fromEntries(record().steps.map((s) => [s.node, s.status]));
const hasHsm = (n: MemoryNode) => n.text(CONFIG)!.includes('hsm:');
const backups = (n: MemoryNode) => [...n.files.keys()].filter((p) => p.startsWith('/var/backups/rollout/'));
const stagedLeft = (n: MemoryNode) => [...n.files.keys()].filter((p) => p.includes('.rollout-staged.'));

function snapshot(n: MemoryNode) {
  return { config: n.text(CONFIG), invocation: n.unit.invocationId, restarts: n.unit.nRestarts };
}

describe('apply on an in-memory fleet', () => {
  it('applies every node in order, each gated, and releases the lock', async () => {
    const r = await apply();
    expect(r.code).toBe(EXIT.ok);
    expect(steps()).toEqual({ 'kms-1': 'done', 'kms-2': 'done', 'kms-3': 'done' });
    expect(record().status).toBe('done');
    for (const n of fleet.nodes.values()) {
      expect(hasHsm(n)).toBe(true);
      expect(n.files.has('/run/rollout/lock.json')).toBe(false);
      expect(stagedLeft(n)).toEqual([]);
    }
    // Each gate's API question and each peer check went through the nodes' probes (a started
    // node answers 200 at once): no command of its own, one round trip each.
    for (const n of fleet.nodes.values()) {
      expect(n.apiAsked.length).toBeGreaterThan(0);
      expect(n.apiAsked.every((a) => a === 'probe 0 localhost:7373 ')).toBe(true);
      expect(n.verbs).not.toContain('rollout-ready');
    }
    // The verbs each node saw, in the session's order: lock, then read and checks.
    expect(fleet.node('kms-1').verbs.slice(0, 3).sort()).toEqual(['rollout-check', 'rollout-lock', 'rollout-read'].sort());
    expect(fleet.node('kms-1').verbs[0]).toBe('rollout-lock');
  });

  it('gate fails on node 2: node 2 restored, node 3 never touched (files, invocation, no backup kept)', async () => {
    fleet.node('kms-2').failsOn = (files) => files.get(CONFIG)!.content.toString().includes('hsm:');
    const before3 = snapshot(fleet.node('kms-3'));
    const r = await apply();
    expect(r.code).toBe(EXIT.rolledBack);
    expect(steps()).toEqual({ 'kms-1': 'done', 'kms-2': 'rolled-back', 'kms-3': 'planned' });
    expect(record().status).toBe('stopped');
    expect(fleet.node('kms-2').text(CONFIG)).toBe(OLD_CONFIG);
    expect(fleet.node('kms-2').unit.activeState).toBe('active');
    expect(snapshot(fleet.node('kms-3'))).toEqual(before3);
    expect(backups(fleet.node('kms-3'))).toEqual([]);
    expect(stagedLeft(fleet.node('kms-3'))).toEqual([]);
  });

  it('link cut after go on node 2: exit 4, node 2 recorded unknown, node 3 untouched', async () => {
    fleet.node('kms-2').cutAt = 'after-go';
    const before3 = snapshot(fleet.node('kms-3'));
    const r = await apply();
    expect(r.code).toBe(EXIT.rollbackFailed);
    expect(steps()).toEqual({ 'kms-1': 'done', 'kms-2': 'unknown', 'kms-3': 'planned' });
    expect(snapshot(fleet.node('kms-3'))).toEqual(before3);
    expect(backups(fleet.node('kms-3'))).toEqual([]);
  });

  it('a file edited between staging and its node\'s turn: nothing moved there, the run stops naming it', async () => {
    fleet.node('kms-1').onGo = () => fleet.node('kms-2').write(CONFIG, `${OLD_CONFIG}# edited by hand\n`);
    const before3 = snapshot(fleet.node('kms-3'));
    const r = await apply();
    expect(r.code).toBe(EXIT.rolledBack);
    expect((r.error as Error).message).toContain('kms-2');
    expect((r.error as Error).message).toContain(CONFIG);
    expect(fleet.node('kms-2').text(CONFIG)).toBe(`${OLD_CONFIG}# edited by hand\n`);
    expect(steps()['kms-2']).toBe('planned');
    expect(snapshot(fleet.node('kms-3'))).toEqual(before3);
  });

  it('a node unhealthy before the next restart: stop, exit 4, the next node untouched', async () => {
    fleet.node('kms-1').onGo = () => fleet.node('kms-3').crash();
    const before2 = snapshot(fleet.node('kms-2'));
    const r = await apply();
    expect(r.code).toBe(EXIT.rollbackFailed);
    expect((r.error as Error).message).toContain('kms-3: minkms is failed/failed');
    expect(steps()).toEqual({ 'kms-1': 'done', 'kms-2': 'planned', 'kms-3': 'planned' });
    expect(snapshot(fleet.node('kms-2'))).toEqual(before2);
  });

  it('ready line logged but the API answers 503: the node is restored, the rollout stops (exit 1), node 3 untouched', async () => {
    writeFileSync(inventory, readFileSync(inventory, 'utf8').replace('  disableLocalHsm: false\n', '  disableLocalHsm: false\n  cluster: { readyTimeoutSeconds: 7 }\n'));
    const kms2 = fleet.node('kms-2');
    kms2.write(ENV, `MINIO_KMS_OPTS="--host kms-2:7443 --config ${CONFIG}"\n`);
    kms2.write(CONFIG, `${OLD_CONFIG}tls:\n  ca: /etc/minkms/ca.pem\n`);
    kms2.apiReady = (files) => (files.get(CONFIG)!.content.toString().includes('hsm:') ? 503 : 200);
    const before3 = snapshot(fleet.node('kms-3'));
    const r = await apply();
    expect(r.code).toBe(EXIT.rolledBack);
    expect((r.error as Error).message).toContain('https://kms-2:7443/v1/health/ready (asked on the node) did not answer 200 within 7 s: HTTP 503');
    expect(steps()).toEqual({ 'kms-1': 'done', 'kms-2': 'rolled-back', 'kms-3': 'planned' });
    expect(hasHsm(kms2)).toBe(false);
    expect(kms2.unit.activeState).toBe('active');
    // Asked on the node, the host and CA from its own files, the time from vars.cluster.
    expect(kms2.apiAsked).toContain('ready kms-2:7443 /etc/minkms/ca.pem 0 7');
    expect(snapshot(fleet.node('kms-3'))).toEqual(before3);
  });

  it('another node\'s API not ready before a restart: stop, exit 4 naming it and the status, the next node untouched', async () => {
    fleet.node('kms-1').onCommitted = () => (fleet.node('kms-3').apiReady = () => 503);
    const before2 = snapshot(fleet.node('kms-2'));
    const r = await apply();
    expect(r.code).toBe(EXIT.rollbackFailed);
    expect((r.error as Error).message).toContain('kms-3: minkms is active/running but its API is not ready (/v1/health/ready: HTTP 503');
    expect(steps()).toEqual({ 'kms-1': 'done', 'kms-2': 'planned', 'kms-3': 'planned' });
    expect(snapshot(fleet.node('kms-2'))).toEqual(before2);
    // One request through the state probe (no new session), no polling.
    expect(fleet.node('kms-3').apiAsked.filter((a) => a.startsWith('probe '))).toContain('probe 0 localhost:7373 ');
    expect(fleet.node('kms-3').verbs).not.toContain('rollout-ready');
  });

  // Each node's API questions through its probe, in the order asked.
  const probeAsks = (name: string) => fleet.node(name).apiAsked.filter((a) => a.startsWith('probe '));

  it('the next turn\'s check of the others goes out with the gate\'s readiness question: the gated node\'s API is asked once, not again', async () => {
    const r = await apply();
    expect(r.code).toBe(EXIT.ok);
    // kms-1: its gate, then before kms-3's go; kms-2: before kms-1's go, then its gate.
    // Asked apart, each would also be asked right after its own gate, before the next go.
    expect(probeAsks('kms-1')).toHaveLength(2);
    expect(probeAsks('kms-2')).toHaveLength(2);
    expect(probeAsks('kms-3')).toHaveLength(3);
    // The waiting channels of kms-2 and kms-3 were pinged with that check, once each.
    expect(NAMES.map((n) => fleet.node(n).pings)).toEqual([1, 1, 1]);
  });

  it('a gate whose first readiness question is not yet 200: the others are asked again before the next go', async () => {
    let asked = 0;
    fleet.node('kms-1').apiReady = (files) => (files.get(CONFIG)!.content.toString().includes('hsm:') && asked++ === 0 ? 503 : 200);
    const r = await apply();
    expect(r.code).toBe(EXIT.ok);
    // kms-1 answered 200 only when polled (the ready verb); kms-3's early answer was dropped
    // and it was asked again before kms-2's go: before kms-1's, with kms-1's first question,
    // before kms-2's, and at its own gate.
    expect(fleet.node('kms-1').verbs).toContain('rollout-ready');
    expect(probeAsks('kms-3')).toHaveLength(4);
    // kms-2's waiting channel was pinged with the dropped check, then again at its turn.
    expect(fleet.node('kms-2').pings).toBe(2);
  });

  it('second Ctrl-C: the node in progress recorded unknown, 130 without process.exit', async () => {
    // During kms-2's gate: its files are moved (recorded `written`), its ready line not yet judged.
    let fired = false;
    const r = await apply({
      onEvent: (name, data, fire) => {
        if (fired || name !== 'step' || data.node !== 'kms-2' || !String(data.text).startsWith('waiting for the ready line')) return;
        fired = true;
        fire();
        fire();
      },
    });
    expect(r.code).toBe(EXIT.interrupted);
    expect(r.lines.join('\n')).toContain('kms-2 is in an unknown state (recorded)');
    expect(record().status).toBe('interrupted');
    expect(steps()).toEqual({ 'kms-1': 'done', 'kms-2': 'unknown', 'kms-3': 'planned' });
  });

  describe('resume completes from what the nodes hold', () => {
    it('after node 1 (a Ctrl-C during its turn)', async () => {
      const first = await apply({ interrupt: (fire) => (fleet.node('kms-1').onGo = fire) });
      expect(first.code).toBe(EXIT.interrupted);
      expect(steps()).toEqual({ 'kms-1': 'done', 'kms-2': 'planned', 'kms-3': 'planned' });
      const r = await apply({ resume: true });
      expect(r.code).toBe(EXIT.ok);
      expect(steps()).toEqual({ 'kms-1': 'done', 'kms-2': 'done', 'kms-3': 'done' });
      for (const n of fleet.nodes.values()) expect(hasHsm(n)).toBe(true);
    });

    it('after node 2\'s write (a hard stop there)', async () => {
      const first = await apply({ interrupt: (fire) => (fleet.node('kms-2').onCommitted = () => (fire(), fire())) });
      expect(first.code).toBe(EXIT.interrupted);
      fleet.node('kms-2').onCommitted = undefined;
      const restarts = fleet.node('kms-2').journal.length;
      const r = await apply({ resume: true });
      expect(r.code).toBe(EXIT.ok);
      expect(steps()).toEqual({ 'kms-1': 'done', 'kms-2': 'done', 'kms-3': 'done' });
      expect(fleet.node('kms-2').journal.length).toBeGreaterThan(restarts);
      for (const n of fleet.nodes.values()) expect(hasHsm(n)).toBe(true);
    });

    it('after node 3 failed its gate and the cause was fixed', async () => {
      fleet.node('kms-3').failsOn = (files) => files.get(CONFIG)!.content.toString().includes('hsm:');
      expect((await apply()).code).toBe(EXIT.rolledBack);
      fleet.node('kms-3').failsOn = () => false;
      const r = await apply({ resume: true });
      expect(r.code).toBe(EXIT.ok);
      expect(steps()).toEqual({ 'kms-1': 'done', 'kms-2': 'done', 'kms-3': 'done' });
    });
  });
});

describe('the cluster, with vars.cluster.apiKey', () => {
  const KEY = 'k1:orchestration-test-admin-key-5Qe1';
  // The order restarts happened in, from each node's moves.
  let restarted: string[];

  beforeEach(() => {
    process.env.ROLLOUT_TEST_KMS_KEY = KEY;
    writeFileSync(inventory, readFileSync(inventory, 'utf8').replace('  disableLocalHsm: false\n', '  disableLocalHsm: false\n  cluster: { apiKey: { env: ROLLOUT_TEST_KMS_KEY }, readyTimeoutSeconds: 1 }\n'));
    restarted = [];
    for (const n of fleet.nodes.values()) {
      n.write(ENV, `MINIO_KMS_HSM_KEY=hsm:aes256:abc\nMINIO_KMS_OPTS="--host ${n.name}:7373 --config ${CONFIG}"\n`);
      n.onCommitted = () => restarted.push(n.name);
    }
  });

  const asked = () => [...fleet.nodes.values()].flatMap((n) => n.clusterAsked);

  it('the leader restarts last, each node seen back in the cluster; the key only ever on stdin', async () => {
    fleet.serveCluster({ key: KEY, leader: 'kms-1' });
    const r = await apply({ preflight: true });
    expect(r.code).toBe(EXIT.ok);
    expect(restarted).toEqual(['kms-2', 'kms-3', 'kms-1']);
    expect(r.lines.join('\n')).toMatch(/ok\s+cluster\s+members\s+3 members, all up, the same nodes as the inventory/);
    expect(r.lines).toContain('Phase vault-hsm: kms-1 leads the cluster; it restarts last.');
    // stat before each phase's order and after each node's gate (the restarted node asked first).
    expect(asked().length).toBeGreaterThanOrEqual(5);
    for (const a of asked()) {
      expect(a.key).toBe(KEY);
      expect(a.args.join(' ')).not.toContain(KEY);
    }
    expect(fleet.node('kms-2').clusterAsked[0]!.args).toEqual(['stat', 'kms-2:7373', '', '0', '/usr/local/bin/minkms']);
  });

  it('with the cluster guard the other nodes are asked when the next turn comes, after the guard\'s check, not with the readiness question', async () => {
    fleet.serveCluster({ key: KEY, leader: 'kms-3' });
    const r = await apply({ preflight: true, order: 'inventory' });
    expect(r.code).toBe(EXIT.ok);
    // kms-1: its gate, then before kms-2's go and before kms-3's; asked early it would have been twice.
    expect(fleet.node('kms-1').apiAsked.filter((a) => a.startsWith('probe '))).toHaveLength(3);
    // Each waiting channel pinged at its own turn, once.
    expect(NAMES.map((n) => fleet.node(n).pings)).toEqual([1, 1, 1]);
  });

  it('--order inventory keeps the inventory order', async () => {
    fleet.serveCluster({ key: KEY, leader: 'kms-1' });
    const r = await apply({ preflight: true, order: 'inventory' });
    expect(r.code).toBe(EXIT.ok);
    expect(restarted).toEqual(['kms-1', 'kms-2', 'kms-3']);
  });

  it('a member the inventory lacks: refused by preflight, nothing staged or changed', async () => {
    fleet.serveCluster({ key: KEY, leader: 'kms-1', extra: { 'kms-4:7373': true } });
    const before = NAMES.map((n) => snapshot(fleet.node(n)));
    const r = await apply({ preflight: true });
    expect(r.code).toBe(EXIT.preflightFailed);
    expect((r.error as Error).message).toContain('member kms-4:7373 is no node of the inventory');
    expect(NAMES.map((n) => snapshot(fleet.node(n)))).toEqual(before);
    for (const n of NAMES) expect(stagedLeft(fleet.node(n))).toEqual([]);
  });

  it('a node of the inventory the cluster does not have, and a member down: both named, nothing changed', async () => {
    fleet.serveCluster({ key: KEY, leader: 'kms-1', dropped: new Set(['kms-3']), extra: { 'kms-9:7373': false } });
    const before = NAMES.map((n) => snapshot(fleet.node(n)));
    const r = await apply({ preflight: true });
    expect(r.code).toBe(EXIT.preflightFailed);
    const msg = (r.error as Error).message;
    expect(msg).toContain('kms-3 (kms-3:7373) is not a member of the cluster');
    expect(msg).toContain('member kms-9:7373 is down (nodes_down)');
    expect(NAMES.map((n) => snapshot(fleet.node(n)))).toEqual(before);
  });

  it('a wrong key: a preflight failure naming the key reference, never the key, nothing changed', async () => {
    fleet.serveCluster({ key: 'k1:the-right-one', leader: 'kms-1' });
    const r = await apply({ preflight: true });
    expect(r.code).toBe(EXIT.preflightFailed);
    const msg = (r.error as Error).message;
    expect(msg).toContain('vars.cluster.apiKey (environment variable ROLLOUT_TEST_KMS_KEY) was refused by `minkms stat` on kms-1 (exit 1: not authorized: invalid API key)');
    expect(`${msg}\n${r.lines.join('\n')}`).not.toContain(KEY);
    expect(restarted).toEqual([]);
  });

  it('a node not back in the cluster after its gate: stop (exit 4), the next node untouched', async () => {
    const dropped = new Set<string>();
    fleet.serveCluster({ key: KEY, leader: 'kms-1', dropped });
    fleet.node('kms-2').onCommitted = () => {
      restarted.push('kms-2');
      dropped.add('kms-2');
    };
    const before3 = snapshot(fleet.node('kms-3'));
    const r = await apply({ preflight: true });
    expect(r.code).toBe(EXIT.rollbackFailed);
    expect((r.error as Error).message).toContain('kms-2 passed its gate (its log and API say ready), but it is not back in the cluster: after 1 s the cluster (asked on kms-2) still says: kms-2 (kms-2:7373) is not a member of the cluster');
    expect(steps()).toEqual({ 'kms-1': 'planned', 'kms-2': 'done', 'kms-3': 'planned' });
    expect(snapshot(fleet.node('kms-3'))).toEqual(before3);
  });

  it('vars.cluster.backup: minkms backup before the first change, its sha256 in the run record; a failed one stops with nothing changed', async () => {
    writeFileSync(inventory, readFileSync(inventory, 'utf8').replace('readyTimeoutSeconds: 1 }', 'readyTimeoutSeconds: 1, backup: true, backupDir: /var/backups/minkms }'));
    fleet.serveCluster({ key: KEY, leader: 'kms-1', backupFails: true });
    const before = NAMES.map((n) => snapshot(fleet.node(n)));
    const failed = await apply({ preflight: true });
    expect(failed.code).toBe(EXIT.preflightFailed);
    expect((failed.error as Error).message).toContain('kms-1: minkms backup failed: exit 1: backup failed: disk full');
    expect(NAMES.map((n) => snapshot(fleet.node(n)))).toEqual(before);
    for (const n of NAMES) expect(backups(fleet.node(n))).toEqual([]);

    fleet.serveCluster({ key: KEY, leader: 'kms-3' });
    const r = await apply({ preflight: true });
    expect(r.code).toBe(EXIT.ok);
    const taken = record().kmsBackup!;
    expect(taken.node).toBe('kms-1');
    expect(taken.path).toMatch(/^\/var\/backups\/minkms\/minkms-.+\.db\.gzip$/);
    expect(taken.sha256).toBe(sha256(fleet.node('kms-1').files.get(taken.path)!.content));
    expect(restarted).toEqual(['kms-1', 'kms-2', 'kms-3']);
  });
});
