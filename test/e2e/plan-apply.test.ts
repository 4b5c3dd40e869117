import { beforeEach, describe, expect, it } from 'vitest';
import {
  LAB_SECRET, VAULT_BLOCK, NODES, allOutput, clearKnob, onNode, fleetSnapshot, journal, labHsmKey, nodeFile, nodeFileStat, resetLab, rollout, seedFile, serviceState, setKnob, writeInventory,
  type JournalLine, type LabNode,
} from '../helpers/lab.js';


// The restart of a node as its journal tells it: when systemd stopped the old
// process, and the first ready line of the invocation running now.
async function restartWindow(node: LabNode, since: number): Promise<{ stoppedUs: number; readyUs: number; ready: JournalLine }> {
  const state = await serviceState(node);
  const lines = (await journal(node)).filter((l) => l.us >= since);
  const stop = lines.find((l) => l.pid === '1' && /^Stopping /.test(l.message));
  const ready = lines.find((l) => l.pid !== '1' && l.invocation === state.InvocationID && l.message.includes('=> Server is up and running'));
  expect(stop, `${node} was stopped after ${since}`).toBeDefined();
  expect(ready, `${node} logged a ready line from its running invocation`).toBeDefined();
  return { stoppedUs: stop!.us, readyUs: ready!.us, ready: ready! };
}

describe('rollout plan and apply against the lab fleet', () => {
  beforeEach(async () => {
    await resetLab();
  });

  it('plan prints each node\'s diff with the secret redacted and changes no byte on any node', async () => {
    const inventory = writeInventory();
    const before = await fleetSnapshot();
    const r = await rollout(['plan', inventory]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const n of NODES) {
      expect(r.stdout).toContain(`=== ${n} (root@127.0.0.1:`);
      expect(r.stdout).toContain(`--- a/etc/minkms/config.yaml\t${n} now`);
    }
    expect(r.stdout).toContain('+      secret: <redacted>');
    expect(r.stdout).toContain('phase 1 vault-hsm: kms-1 -> kms-2 -> kms-3');
    expect(r.stdout).not.toContain(LAB_SECRET);
    expect(await fleetSnapshot()).toEqual(before);
  });

  it('apply --dry-run prints the plan and changes nothing; without a TTY and without --yes apply refuses', async () => {
    const inventory = writeInventory();
    const before = await fleetSnapshot();
    const plan = await rollout(['plan', inventory]);
    const dry = await rollout(['apply', inventory, '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout.replace(/\nDry run: nothing was changed\.\n$/, '')).toBe(plan.stdout.replace(/\nPlan complete: .*\n$/, ''));
    const refused = await rollout(['apply', inventory]);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toContain('no terminal to confirm on');
    expect(await fleetSnapshot()).toEqual(before);
  });

  it('apply converts every node one at a time, each gated on a ready line after its own restart; a second apply is a no-op', async () => {
    const inventory = writeInventory();
    const startUs = Date.now() * 1000;
    const stats = Object.fromEntries(NODES.map((n) => [n, nodeFileStat(n, 'etc/minkms/config.yaml')]));
    const r = await rollout(['apply', inventory, '--yes']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);

    const windows = [];
    for (const n of NODES) {
      // Comments and every other byte survive: the new file is the old one plus the block.
      expect(nodeFile(n, 'etc/minkms/config.yaml').toString()).toBe(seedFile(n, 'config.yaml').toString() + VAULT_BLOCK);
      expect(nodeFileStat(n, 'etc/minkms/config.yaml')).toEqual(stats[n]);
      expect(nodeFile(n, 'etc/default/minkms')).toEqual(seedFile(n, 'minkms.env'));
      const state = await serviceState(n);
      expect(state.ActiveState).toBe('active');
      const w = await restartWindow(n, startUs);
      expect(w.ready.message).toContain('=> Server is up and running');
      // The new process runs on Vault: its banner says so.
      expect((await journal(n)).some((l) => l.invocation === state.InvocationID && /^HSM\s+vault/.test(l.message))).toBe(true);
      windows.push(w);
    }
    // Strictly one at a time: a node is stopped only after the previous one was ready again.
    for (let i = 1; i < windows.length; i++) expect(windows[i]!.stoppedUs).toBeGreaterThan(windows[i - 1]!.readyUs);

    const after = await fleetSnapshot();
    const again = await rollout(['apply', inventory, '--yes']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('Every node is up to date: nothing to do, nothing restarted.');
    const snap = await fleetSnapshot();
    for (const n of NODES) expect((snap[n] as { invocation: string }).invocation).toBe((after[n] as { invocation: string }).invocation);
    expect(snap).toEqual(after);
  });

  it('a node that fails its gate is restored byte for byte, restarted healthy, and the nodes after it are untouched', async () => {
    const inventory = writeInventory();
    setKnob('kms-2', 'reject-vault', 'Error making API request. Code: 400. Errors: * invalid role or secret ID');
    const before = await fleetSnapshot();
    try {
      const r = await rollout(['apply', inventory, '--yes']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('ROLLOUT STOPPED: kms-2 failed its gate after the change');
      expect(r.stderr).toContain('invalid role or secret ID');
      expect(r.stderr).toContain('came back healthy');

      expect(nodeFile('kms-1', 'etc/minkms/config.yaml').toString()).toContain('hsm:');
      expect(nodeFile('kms-2', 'etc/minkms/config.yaml')).toEqual(seedFile('kms-2', 'config.yaml'));
      expect(nodeFileStat('kms-2', 'etc/minkms/config.yaml')).toEqual((before['kms-2'] as { configStat: unknown }).configStat);
      const kms2 = await serviceState('kms-2');
      expect(kms2.ActiveState).toBe('active');
      expect((await journal('kms-2')).some((l) => l.invocation === kms2.InvocationID && l.message.includes('Server is up and running'))).toBe(true);
      // kms-3 was never touched: same bytes, same running process.
      const after = await fleetSnapshot();
      expect(after['kms-3']).toEqual(before['kms-3']);
    } finally {
      clearKnob('kms-2', 'reject-vault');
    }
  });

  it('apply refuses before touching any node when one node\'s service is not running', async () => {
    setKnob('kms-3', 'fail-start', 'Error: simulated broken node');
    try {
      await onNode('kms-3', 'systemctl restart minkms || true');
      const inventory = writeInventory();
      const before = await fleetSnapshot();
      const r = await rollout(['apply', inventory, '--yes']);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain('preflight failed, no node was changed');
      expect(r.stderr).toMatch(/kms-3 service: minkms is not running now/);
      const after = await fleetSnapshot();
      for (const n of ['kms-1', 'kms-2'] as const) expect(after[n]).toEqual(before[n]);
    } finally {
      clearKnob('kms-3', 'fail-start');
    }
  });

  it('never prints a secret: not the AppRole secret, not the HSM key, not an API key', () => {
    const everything = allOutput.join('\n');
    expect(everything.length).toBeGreaterThan(1000);
    expect(everything).not.toContain(LAB_SECRET);
    expect(everything).not.toContain(labHsmKey());
    expect(everything).not.toMatch(/API Key\s+k1:/);
  });
});
