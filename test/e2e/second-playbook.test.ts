// A playbook that is not the MinKMS one: greeter-settings sets a YAML key and
// an env line of the lab's greeter service and restarts it node by node, gated
// on greeter's own ready line; minkms, on the same nodes, is never touched.
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import {
  NODES, greeterSays, greeterSeed, nodeFile, nodeFileStat, onNode, resetLab, rollout, unitJournal, unitState, writeGreeterInventory,
  type LabNode,
} from '../helpers/lab.js';

const CONFIG = 'etc/greeter/config.yaml';
const ENV = 'etc/default/greeter';
const GREETING = 'Hello from rollout';

// Each unit's invocation and restart count on every node.
async function units(unit: string): Promise<Record<string, Record<string, string>>> {
  return Object.fromEntries(await Promise.all(NODES.map(async (n) => [n, await unitState(n, unit)] as const)));
}

// greeter's restarts on a node since `sinceUs` (systemd's "Stopping" lines) and the ready line of the invocation running now.
async function greeterRestarts(node: LabNode, sinceUs: number): Promise<{ stops: number[]; readyUs: number | null; listening: string | null }> {
  const state = await unitState(node, 'greeter');
  const lines = (await unitJournal(node, 'greeter')).filter((l) => l.us >= sinceUs);
  const own = lines.filter((l) => l.pid !== '1' && l.invocation === state.InvocationID);
  return {
    stops: lines.filter((l) => l.pid === '1' && /^Stopping greeter\.service/.test(l.message)).map((l) => l.us),
    readyUs: own.find((l) => l.message === 'greeter ready')?.us ?? null,
    listening: own.find((l) => l.message.startsWith('greeter: listening'))?.message ?? null,
  };
}

const envAfter = (n: LabNode) => greeterSeed(n, 'env').toString().replace('GREETER_WORKERS=2\n', 'GREETER_WORKERS=4\n');
const configAfter = (n: LabNode, greeting: string) => `${greeterSeed(n, 'config').toString()}greeting:\n  text: ${greeting}\n`;

describe('a second playbook (greeter-settings) against the lab fleet', () => {
  beforeEach(async () => {
    await resetLab();
  });
  afterAll(async () => {
    await resetLab();
  });

  it('plan shows both diffs; apply changes every node one at a time, greeter restarted once each, minkms untouched; again: a no-op', async () => {
    const inventory = writeGreeterInventory({ greeting: GREETING });
    const minkms = await units('minkms');
    const stats = Object.fromEntries(NODES.map((n) => [n, [nodeFileStat(n, CONFIG), nodeFileStat(n, ENV)]]));

    const plan = await rollout(['plan', inventory]);
    expect(plan.stderr).toBe('');
    expect(plan.code).toBe(0);
    for (const n of NODES) {
      const section = plan.stdout.slice(plan.stdout.indexOf(`=== ${n} `), n === 'kms-3' ? undefined : plan.stdout.indexOf(`=== kms-${Number(n.slice(4)) + 1} `));
      expect(section).toContain(`--- a/${CONFIG}\t${n} now`);
      expect(section).toContain(`+greeting:\n+  text: ${GREETING}\n`);
      expect(section).toContain(`--- a/${ENV}\t${n} now`);
      expect(section).toContain('-GREETER_WORKERS=2\n+GREETER_WORKERS=4\n');
    }
    expect(plan.stdout).toContain('phase 1 greeting: kms-1 -> kms-2 -> kms-3');
    expect(plan.stdout).not.toMatch(/minkms/);
    for (const n of NODES) expect(nodeFile(n, ENV)).toEqual(greeterSeed(n, 'env'));

    const startUs = Date.now() * 1000;
    const apply = await rollout(['apply', inventory, '--yes']);
    expect(apply.stderr).toBe('');
    expect(apply.code).toBe(0);
    const windows = [];
    for (const n of NODES) {
      expect(nodeFile(n, CONFIG).toString()).toBe(configAfter(n, GREETING));
      expect(nodeFile(n, ENV).toString()).toBe(envAfter(n));
      expect([nodeFileStat(n, CONFIG), nodeFileStat(n, ENV)]).toEqual(stats[n]);
      const r = await greeterRestarts(n, startUs);
      expect(r.stops, `${n}: greeter restarted once`).toHaveLength(1);
      expect(r.listening).toBe(`greeter: listening on /run/greeter/greeter.sock, greeting="${GREETING}" workers=4`);
      expect(r.readyUs).not.toBeNull();
      expect(await greeterSays(n)).toBe(GREETING);
      windows.push(r);
    }
    // One at a time: a node's greeter is stopped only after the previous one's new process was ready.
    for (let i = 1; i < windows.length; i++) expect(windows[i]!.stops[0]!).toBeGreaterThan(windows[i - 1]!.readyUs!);
    // minkms, on the same nodes, kept its process.
    expect(await units('minkms')).toEqual(minkms);

    const greeter = await units('greeter');
    const again = await rollout(['apply', inventory, '--yes']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('Every node is up to date: nothing to do, nothing restarted.');
    expect(await units('greeter')).toEqual(greeter);
    expect((await rollout(['plan', inventory, '--detailed-exitcode'])).code).toBe(0);
  });

  it('a greeting greeter refuses fails the first node\'s gate: its files are restored, greeter runs on them again, the others are untouched (exit 1)', async () => {
    const tooLong = `Hello ${'there '.repeat(15)}`.trim();
    const inventory = writeGreeterInventory({ greeting: tooLong });
    const minkms = await units('minkms');
    const greeter = await units('greeter');
    const startUs = Date.now() * 1000;

    const r = await rollout(['apply', inventory, '--yes']);
    expect(r.code).toBe(1);
    const out = `${r.stdout}\n${r.stderr}`;
    expect(out).toContain('kms-1');
    expect(out).toContain('greeter: error: /etc/greeter/config.yaml: greeting.text is longer than 80 characters');

    // kms-1: tried once, restored, back on its old files with a new healthy process.
    expect(nodeFile('kms-1', CONFIG)).toEqual(greeterSeed('kms-1', 'config'));
    expect(nodeFile('kms-1', ENV)).toEqual(greeterSeed('kms-1', 'env'));
    const lines = (await unitJournal('kms-1', 'greeter')).filter((l) => l.us >= startUs).map((l) => l.message);
    expect(lines).toContain('greeter: error: /etc/greeter/config.yaml: greeting.text is longer than 80 characters');
    const back = await unitState('kms-1', 'greeter');
    expect(back.ActiveState).toBe('active');
    expect(back.InvocationID).not.toBe(greeter['kms-1']!.InvocationID);
    expect((await greeterRestarts('kms-1', startUs)).listening).toBe('greeter: listening on /run/greeter/greeter.sock, greeting="Hello" workers=2');
    expect(await greeterSays('kms-1')).toBe('Hello');

    // kms-2, kms-3: same files, same greeter process, nothing left beside the files.
    for (const n of ['kms-2', 'kms-3'] as const) {
      expect(nodeFile(n, CONFIG)).toEqual(greeterSeed(n, 'config'));
      expect(nodeFile(n, ENV)).toEqual(greeterSeed(n, 'env'));
      expect(await unitState(n, 'greeter')).toEqual(greeter[n]);
      expect(await onNode(n, 'ls -A /etc/greeter /etc/default | grep rollout || true')).toBe('');
    }
    expect(await units('minkms')).toEqual(minkms);
  });
});
