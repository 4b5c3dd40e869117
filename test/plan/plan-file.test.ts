import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { computePhases } from '../../src/plan/build.js';
import { compareWithPlanFile, readPlanFile, toPlanFile } from '../../src/plan/plan-file.js';
import type { Plan } from '../../src/plan/types.js';
import { CONFIG, ENV, node, reader, shippedPlaybook, vars } from '../helpers/plan-inputs.js';

async function plan(): Promise<Plan> {
  const phases = await computePhases(reader({ '/etc/default/minkms': ENV, '/etc/minkms/config.yaml': CONFIG }), node, await shippedPlaybook(), vars());
  return { playbookName: 'minkms-vault-hsm', phases: [{ name: 'vault-hsm', description: '', enabled: true }], nodes: [{ node, status: 'ready', phases }] };
}

describe('the saved plan', () => {
  it('says which node restarts in which phase, next to its file changes', async () => {
    const saved = toPlanFile(await plan(), '/inv.yaml', 'a', 'b', '');
    expect(saved.nodes[0]!.restarts).toEqual([{ phase: 'vault-hsm', unit: 'minkms' }]);
    expect(saved.nodes[0]!.changes.map((c) => c.path)).toEqual(['/etc/minkms/config.yaml']);
  });

  it('is stale when the same files would restart another unit, or none', async () => {
    const p = await plan();
    const saved = toPlanFile(p, '/inv.yaml', 'a', 'b', '');
    const ready = p.nodes[0] as Extract<Plan['nodes'][number], { status: 'ready' }>;
    const other: Plan = { ...p, nodes: [{ ...ready, phases: [{ ...ready.phases[0]!, restart: { kind: 'restart', unit: 'minkms-other' } }] }] };
    expect(compareWithPlanFile(saved, other)).toEqual(['plan is stale: kms-1 (phase vault-hsm) now restarts minkms-other where the saved plan restarts minkms']);
    const none: Plan = { ...p, nodes: [{ ...ready, phases: [{ ...ready.phases[0]!, restart: null }] }] };
    expect(compareWithPlanFile(saved, none)).toEqual(['plan is stale: kms-1 (phase vault-hsm) now restarts nothing where the saved plan restarts minkms']);
    expect(compareWithPlanFile(saved, p)).toEqual([]);

    // A plan saved before restarts were (no `restarts`): still read, its restarts not compared.
    const { restarts: _, ...older } = toPlanFile(p, '/inv.yaml', 'a', 'b', '').nodes[0]!;
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'rollout-saved-')), 'old.plan');
    writeFileSync(file, JSON.stringify({ ...saved, nodes: [older] }));
    const old = (await readPlanFile(file))!;
    expect(old.nodes[0]!.restarts).toBeUndefined();
    expect(compareWithPlanFile(old, other)).toEqual([]);
  });
});
