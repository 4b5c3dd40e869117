// Day two on the lab fleet: the nodes run on Vault with SecretID A; Vault issues
// B and revokes A; an apply with B in the inventory proves B first, rewrites
// only the secret on each node (a keyed fingerprint shows it changed, never the
// value), and every node restarts on B. A node left on A can no longer start.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LAB_SECRET, NODES, allOutput, clearKnob, nodeFile, resetLab, rollout, serviceState, setKnob, vaultDouble, writeInventory, type LabNode } from '../helpers/lab.js';

const NEW_SECRET = 'lab-approle-secret-rotated-9c41e07b2d';
const ROLE = '3f1c2a9e-lab-role';

type StatusRow = { node: string; service: string | null; credentials: string[] | null };

async function credentials(inventory: string): Promise<Record<string, string>> {
  const r = await rollout(['status', inventory, '--json'], { ROLLOUT_E2E_SECRET: NEW_SECRET });
  const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string } & StatusRow).filter((e) => e.event === 'node-status');
  return Object.fromEntries(rows.map((row) => [row.node, (row.credentials ?? []).join(',')]));
}

const config = (n: LabNode) => nodeFile(n, 'etc/minkms/config.yaml').toString();

// Vault issues the new SecretID for the role; the old one stops working at once.
const rotateInVault = () => vaultDouble.update((s) => {
  s.namespaces['']!.approle!.roles[ROLE]!.secret_id = NEW_SECRET;
});

describe('rotating the Vault credentials (an existing hsm.vault updated in place)', () => {
  let inventory: string;

  beforeEach(async () => {
    await resetLab();
    await vaultDouble.reset();
    inventory = writeInventory();
    // Day one: every node moves to Vault with the old SecretID.
    const first = await rollout(['apply', inventory, '--yes']);
    expect(first.code).toBe(0);
  });
  afterEach(() => {
    for (const n of NODES) clearKnob(n, 'reject-vault-secret');
  });

  it('the new secret is proven, then written node by node: only that value changes, its fingerprint differs, every node restarts on it', async () => {
    const before = await credentials(inventory);
    expect(new Set(Object.values(before)).size).toBe(1);
    expect(Object.values(before)[0]).toMatch(/^approle\.secret:[0-9a-f]{6}$/);
    const configsBefore = NODES.map(config);
    await rotateInVault();

    const plan = await rollout(['plan', inventory], { ROLLOUT_E2E_SECRET: NEW_SECRET });
    expect(plan.code).toBe(0);
    // One line out, one line in, per node: the secret, each side with its own fingerprint.
    const removed = plan.stdout.split('\n').filter((l) => /^-\s+secret: /.test(l));
    const added = plan.stdout.split('\n').filter((l) => /^\+\s+secret: /.test(l));
    expect(removed).toHaveLength(3);
    expect(added).toHaveLength(3);
    const oldFp = /<redacted:([0-9a-f]{6})>/.exec(removed[0]!)![1]!;
    const newFp = /<redacted:([0-9a-f]{6})>/.exec(added[0]!)![1]!;
    expect(oldFp).not.toBe(newFp);
    expect(new Set([...removed, ...added].map((l) => l.trim()))).toEqual(new Set([`-      secret: <redacted:${oldFp}>`, `+      secret: <redacted:${newFp}>`]));
    expect(before['kms-1']).toBe(`approle.secret:${oldFp}`);
    expect(plan.stdout.split('\n').filter((l) => /^[-+](?![-+])/.test(l))).toHaveLength(6);

    const r = await rollout(['apply', inventory, '--yes'], { ROLLOUT_E2E_SECRET: NEW_SECRET });
    expect(r.code).toBe(0);
    // Preflight logged in with the new SecretID before any node changed.
    expect(r.stdout).toMatch(/ok +vault +login +AppRole login as role ID 3f1c2a9e-lab-role/);
    for (const [i, n] of NODES.entries()) {
      expect(config(n)).toBe(configsBefore[i]!.replace(`secret: ${LAB_SECRET}`, `secret: ${NEW_SECRET}`));
      expect((await serviceState(n)).ActiveState).toBe('active');
    }
    expect(await credentials(inventory)).toEqual({ 'kms-1': `approle.secret:${newFp}`, 'kms-2': `approle.secret:${newFp}`, 'kms-3': `approle.secret:${newFp}` });
    for (const text of allOutput) {
      expect(text).not.toContain(NEW_SECRET);
      expect(text).not.toContain(LAB_SECRET);
    }
  });

  it('a node that refuses the new secret is put back on its old one and the rollout stops; status shows who has which', async () => {
    const oldCreds = await credentials(inventory);
    // Vault still knows both: the rotation fails on kms-2 alone (its path to Vault refuses the new one).
    await vaultDouble.update((s) => {
      s.namespaces['']!.approle!.roles['3f1c2a9e-lab-role-new'] = { secret_id: NEW_SECRET, policies: ['minkms'] };
    });
    setKnob('kms-2', 'reject-vault-secret', NEW_SECRET);
    const rotated = writeInventory({ roleId: '3f1c2a9e-lab-role-new' });
    const before3 = (await serviceState('kms-3')).InvocationID;
    const r = await rollout(['apply', rotated, '--yes'], { ROLLOUT_E2E_SECRET: NEW_SECRET });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('kms-2 failed its gate after the change');
    const after = await credentials(rotated);
    expect(after['kms-1']).not.toBe(oldCreds['kms-1']);
    expect(after['kms-2']).toBe(oldCreds['kms-2']);
    expect(after['kms-3']).toBe(oldCreds['kms-3']);
    expect((await serviceState('kms-2')).ActiveState).toBe('active');
    expect((await serviceState('kms-3')).InvocationID).toBe(before3);
  });

  it('with the old SecretID revoked, a node left on it cannot start again', async () => {
    await rotateInVault();
    // Only kms-1 is rotated; kms-2 keeps the old, revoked, SecretID.
    const r = await rollout(['apply', inventory, '--yes', '--limit', 'kms-1'], { ROLLOUT_E2E_SECRET: NEW_SECRET });
    expect(r.code).toBe(0);
    // A restart of kms-2 now (a reboot, a crash) fails on Vault: the gate of any later run would too.
    const rollback = await rollout(['rollback', inventory, '--node', 'kms-1', '--yes'], { ROLLOUT_E2E_SECRET: NEW_SECRET });
    expect(rollback.code).not.toBe(0);
    expect(rollback.stderr).toMatch(/invalid role or secret ID/);
  });
});
