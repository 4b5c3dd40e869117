import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import type { AuditReport } from '../../src/report/audit-report.js';
import {
  LAB_SECRET, VAULT_BLOCK, NODES, allOutput, clearKnob, onNode, fleetSnapshot, journal, labHsmKey, nodeFile, nodeFileStat, resetLab, rollout, seedFile, serviceState, setKnob, vaultDouble, writeInventory,
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
    expect(r.stdout).toMatch(/\+      secret: <redacted:[0-9a-f]{6}>/);
    expect(r.stdout).toContain('phase 1 vault-hsm: kms-1 -> kms-2 -> kms-3');
    expect(r.stdout).not.toContain(LAB_SECRET);
    // status before any change: every node pending, the local key present, no run yet.
    const status = await rollout(['status', inventory]);
    expect(status.code).toBe(0);
    for (const n of NODES) expect(status.stdout).toMatch(new RegExp(`\\n${n} +yes +verified +active/running +\\d+ +no +present +-`));
    // --quiet: the outcome line only. --json: one event per line, the diffs redacted, ending with the exit code.
    const quiet = await rollout(['plan', inventory, '--quiet']);
    expect(quiet.stdout).toBe('Plan complete: nothing was changed. Run `rollout apply` to make these changes.\n');
    const json = await rollout(['plan', inventory, '--json']);
    const events = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string; ts: string; [k: string]: unknown });
    expect(events.map((e) => e.event)).toEqual(['plan-node', 'plan-node', 'plan-node', 'plan', 'message', 'exit']);
    expect(events[0]).toMatchObject({ node: 'kms-1', status: 'ready', restarts: [{ phase: 'vault-hsm', unit: 'minkms' }] });
    expect((events[0]!.changes as Array<{ diff: string }>)[0]!.diff).toMatch(/\+      secret: <redacted:[0-9a-f]{6}>/);
    expect(events.at(-1)).toMatchObject({ event: 'exit', code: 0 });
    expect(json.stdout).not.toContain(LAB_SECRET);
    // For a CI drift check: changes pending is its own exit code.
    expect((await rollout(['plan', inventory, '--detailed-exitcode'])).code).toBe(6);
    expect(await fleetSnapshot()).toEqual(before);
  });

  it('plan --limit reads only the nodes named; an unknown name is exit 2 before any connection', async () => {
    const inventory = writeInventory();
    const r = await rollout(['plan', inventory, '--limit', 'kms-3,kms-1']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('=== kms-1 (root@127.0.0.1:');
    expect(r.stdout).toContain('=== kms-3 (root@127.0.0.1:');
    expect(r.stdout).not.toContain('=== kms-2');
    expect(r.stdout).toContain('phase 1 vault-hsm: kms-1 -> kms-3');
    const bad = await rollout(['plan', inventory, '--limit', 'kms-4']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--limit: no node or group named "kms-4"');
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

    // The change record: who, what, each file's checksums before and after, each gate's evidence.
    const { json, md } = readReport(inventory);
    expect(r.stdout).toContain(`Report: ${path.join(path.dirname(inventory), '.rollout', 'inventory', 'reports', json.runId, 'report.md')}`);
    expect(json).toMatchObject({ schema: 'rollout-report/v1', outcome: 'done', exitCode: 0, ranBy: { user: userInfo().username }, nodes: [...NODES] });
    expect(json.inventory.sha256).toBe(createHash('sha256').update(readFileSync(inventory)).digest('hex'));
    for (const n of NODES) {
      const step = json.steps.find((s) => s.node === n)!;
      expect(step.status).toBe('done');
      expect(step.files[0]!.beforeSha256).toBe(createHash('sha256').update(seedFile(n, 'config.yaml')).digest('hex'));
      expect(step.files[0]!.afterSha256).toBe(createHash('sha256').update(nodeFile(n, 'etc/minkms/config.yaml')).digest('hex'));
      expect(step.gate?.verdict).toBe('passed');
      expect(step.gate?.evidence.map((e) => e.line)).toContainEqual(expect.stringContaining('=> Server is up and running'));
    }
    expect(md).toMatch(/\| kms-2 \| vault-hsm \| done \| passed in \d+\.\d s \| `\/etc\/minkms\/config\.yaml` [0-9a-f]{12} → [0-9a-f]{12} \|/);
    expect(md).toMatch(/\+      secret: <redacted:[0-9a-f]{6}>/);
    expect(`${md}${JSON.stringify(json)}`).not.toContain(LAB_SECRET);

    // status: every node on Vault now, the key still in place (phase 2 not run), the run done.
    const status = await rollout(['status', inventory, '--json']);
    expect(status.code).toBe(0);
    const rows = status.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.event === 'node-status');
    expect(rows.map((r) => [r.node, r.reachable, r.hostKey, r.service, (r.phases as Record<string, string>)['vault-hsm'], (r.localKey as { present: boolean }).present])).toEqual(
      NODES.map((n) => [n, true, 'verified', 'active/running', 'yes', true]),
    );
    expect((rows[0]!.lastRun as { status: string; step: string }).step).toBe('vault-hsm done');
    const table = await rollout(['status', inventory]);
    expect(table.stdout).toMatch(/^NODE +REACHABLE +HOST KEY +SERVICE +RESTARTS +VAULT-HSM +LOCAL KEY +LAST RUN/);
    expect(table.stdout).toMatch(/\nkms-2 +yes +verified +active\/running +\d+ +yes +present +vault-hsm done \(done \S+\)/);

    const after = await fleetSnapshot();
    const asked = (await vaultDouble.requests()).length;
    const again = await rollout(['apply', inventory, '--yes']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('Every node is up to date: nothing to do, nothing restarted.');
    // Nothing to do: no Vault login (a SecretID use) was spent on it.
    expect((await vaultDouble.requests()).slice(asked).filter((q) => q.path.endsWith('/login'))).toEqual([]);
    expect((await rollout(['plan', inventory, '--detailed-exitcode'])).code).toBe(0);
    const snap = await fleetSnapshot();
    for (const n of NODES) expect((snap[n] as { invocation: string }).invocation).toBe((after[n] as { invocation: string }).invocation);
    expect(snap).toEqual(after);
  });

  it('a node that fails its gate is restored byte for byte, restarted healthy, and the nodes after it are untouched', async () => {
    const inventory = writeInventory();
    setKnob('kms-2', 'reject-vault', 'Error making API request. Code: 400. Errors: * invalid role or secret ID');
    const before = await fleetSnapshot();
    try {
      const r = await rollout(['apply', inventory, '--yes', '--json']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('ROLLOUT STOPPED: kms-2 failed its gate after the change');
      // For automation: the same story as events.
      const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string; node?: string; [k: string]: unknown });
      expect(events.filter((e) => e.event.startsWith('node-')).map((e) => `${e.event} ${e.node}`)).toEqual(['node-start kms-1', 'node-done kms-1', 'node-start kms-2', 'node-failed kms-2']);
      const failed = events.find((e) => e.event === 'node-failed')!;
      expect(failed).toMatchObject({ restored: true, gate: { verdict: 'failed' } });
      // kms-1's gate: the unit's state right after its ready line, read on the node.
      const done = events.find((e) => e.event === 'node-done')!;
      expect((done.gate as { reason: string }).reason).toContain('right after it, systemd reported the unit active/running in that invocation');
      expect((failed.gate as { evidence: Array<{ line: string }> }).evidence.map((e) => e.line)).toContainEqual(expect.stringContaining('invalid role or secret ID'));
      expect(events.some((e) => e.event === 'error' && String(e.text).includes('ROLLOUT STOPPED: kms-2'))).toBe(true);
      expect(events.at(-1)).toMatchObject({ event: 'exit', code: 1 });
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
      const { json, md } = readReport(inventory);
      expect(json).toMatchObject({ outcome: 'stopped', exitCode: 1 });
      expect(json.steps.map((s) => [s.node, s.status])).toEqual([['kms-1', 'done'], ['kms-2', 'rolled-back'], ['kms-3', 'planned']]);
      expect(json.steps[1]!.gate?.evidence.map((e) => e.line)).toContainEqual(expect.stringContaining('invalid role or secret ID'));
      expect(md).toContain('## Why it stopped');
    } finally {
      clearKnob('kms-2', 'reject-vault');
    }
  });

  it('apply --canary: the first node alone, its evidence shown; without a terminal it needs --yes', async () => {
    const inventory = writeInventory();
    const before = await fleetSnapshot();
    const refused = await rollout(['apply', inventory, '--canary']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('--canary asks before going past the first node: it needs a terminal, or --yes');
    expect(await fleetSnapshot()).toEqual(before);

    const r = await rollout(['apply', inventory, '--canary', '--yes']);
    expect(r.code).toBe(0);
    const canary = r.stdout.indexOf('Canary kms-1 passed its gate in');
    expect(canary).toBeGreaterThan(0);
    expect(r.stdout.slice(canary).split('\n').slice(1, 12).join('\n')).toContain('=> Server is up and running');
    // Nothing happened to kms-2 before the canary's evidence was shown.
    expect(r.stdout.slice(0, canary)).not.toMatch(/kms-2: (?:written|restarted)/);
    expect(fleetStates()).toEqual(['new', 'new', 'new']);
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

function fleetStates(): string[] {
  return NODES.map((n) => (nodeFile(n, 'etc/minkms/config.yaml').toString().includes('hsm:') ? 'new' : 'old'));
}

/** The one run report of an inventory's state dir (the tests' inventories each live in a fresh dir). */
function readReport(inventory: string): { json: AuditReport; md: string } {
  const dir = path.join(path.dirname(inventory), '.rollout', 'inventory', 'reports');
  const runs = readdirSync(dir);
  expect(runs).toHaveLength(1);
  return { json: JSON.parse(readFileSync(path.join(dir, runs[0]!, 'report.json'), 'utf8')) as AuditReport, md: readFileSync(path.join(dir, runs[0]!, 'report.md'), 'utf8') };
}
