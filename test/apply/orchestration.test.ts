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
import { MemoryFleet, type MemoryNode } from '../helpers/memory-fleet.js';

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
async function apply(opts: { resume?: boolean; interrupt?: (fire: () => void) => void; onEvent?: (name: string, data: Record<string, unknown>, fire: () => void) => void } = {}): Promise<Run> {
  const lines: string[] = [];
  let handler: (() => void) | null = null;
  let hardStop: (code: number) => void = () => undefined;
  const hooks: ApplyHooks = {
    view: { mode: 'json', useRedactor: () => undefined, out: (t) => lines.push(t), result: (t) => lines.push(t), err: (t) => lines.push(t), event: (name, data = {}) => opts.onEvent?.(name, data, () => handler?.()) },
    showPlan: () => undefined,
    preflight: async () => undefined,
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
    const code = await Promise.race([runApply(inventory, { yes: true, skipVaultChecks: true, resume: opts.resume === true }, hooks), stopped]);
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
