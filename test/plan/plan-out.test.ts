import { mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { checkPlanOut } from '../../src/plan/plan-file.js';

describe('checkPlanOut (plan --out)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'rollout-out-'));

  it('takes a new file or a saved plan', async () => {
    await expect(checkPlanOut(path.join(dir, 'new.plan'))).resolves.toBeUndefined();
    const saved = path.join(dir, 'old.plan');
    writeFileSync(saved, JSON.stringify({ kind: 'rollout-plan', version: 1, createdAt: 'x', inventory: '/i', inventorySha256: 'a', playbookSha256: 'b', rendered: '', nodes: [] }));
    await expect(checkPlanOut(saved)).resolves.toBeUndefined();
  });

  it('refuses the inventory (or any other file that is not a saved plan) and a link, naming what to do', async () => {
    const inventory = path.join(dir, 'prod.yaml');
    writeFileSync(inventory, 'version: v1\nnodes: []\n');
    await expect(checkPlanOut(inventory)).rejects.toThrow(UsageError);
    await expect(checkPlanOut(inventory)).rejects.toThrow(/prod\.yaml already exists and is not a saved plan \(it would be overwritten\); choose a new file/);
    symlinkSync(path.join(dir, 'elsewhere'), path.join(dir, 'link.plan'));
    await expect(checkPlanOut(path.join(dir, 'link.plan'))).rejects.toThrow(/link\.plan is a symbolic link/);
  });
});
