// vars.cluster: how the readiness checks ask each node's API. Validated like
// every other inventory key, carried to each node's plan target, and never a
// var a playbook may use (it does not reach the playbook's values).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadInventory } from '../../src/inventory/load.js';
import { resolveVars } from '../../src/inventory/secrets.js';
import { varsProblems } from '../../src/playbook/load.js';
import { shippedPlaybook } from '../helpers/plan-inputs.js';

const dir = mkdtempSync(path.join(tmpdir(), 'rollout-cluster-'));
const inventory = (cluster: string) => {
  const file = path.join(dir, `inv-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, `version: v1
ssh: { config: none, knownHosts: /dev/null }
nodes:
  - host: kms-1
vars:
  vault:
    server: https://vault.example.net:8200
    approle: { id: r, secret: s }
    transit: { key: k }
${cluster}`);
  return file;
};

describe('vars.cluster', () => {
  it('reaches every node (insecure defaults to false); absent, the nodes carry none', async () => {
    const inv = await loadInventory(inventory('  cluster: { readyTimeoutSeconds: 30 }\n'));
    expect(inv.nodes[0]!.cluster).toEqual({ insecure: false, readyTimeoutSeconds: 30, cli: '/usr/local/bin/minkms', backup: false, backupDir: '/var/backups/minkms' });
    expect((await loadInventory(inventory(''))).nodes[0]!.cluster).toBeUndefined();
  });

  it('a wrong value or an unknown key is refused, naming the file, line and key path', async () => {
    const file = inventory('  cluster:\n    insecure: "yes"\n    readyTimeout: 5\n');
    const err = await loadInventory(file).catch((e: Error) => e);
    expect(String(err)).toContain(file);
    expect(String(err)).toMatch(/vars\.cluster\.insecure/);
    expect(String(err)).toMatch(/readyTimeout/);
  });

  it('apiKey: from env or file only, resolved as a secret with the reference named, never a playbook value', async () => {
    process.env.ROLLOUT_TEST_CLUSTER_KEY = 'k1:unit-test-key-abc';
    const inv = await loadInventory(inventory('  cluster: { apiKey: { env: ROLLOUT_TEST_CLUSTER_KEY } }\n'));
    const vars = await resolveVars(inv.vars, inv.file);
    expect(vars.cluster).toEqual({ apiKey: 'k1:unit-test-key-abc', keyRef: 'vars.cluster.apiKey (environment variable ROLLOUT_TEST_CLUSTER_KEY)' });
    expect(vars.secrets).toContain('k1:unit-test-key-abc');
    expect(JSON.stringify(vars.values)).not.toContain('k1:');
    const literal = inventory('  cluster: { apiKey: k1:written-here }\n');
    expect(String(await loadInventory(literal).catch((e: Error) => e))).toMatch(/vars\.cluster\.apiKey.*\{ env: NAME \} or \{ file: PATH \}/s);
  });

  it('apiKey: a value that is no k1: key, or a missing variable, is an input error naming the reference, never the value', async () => {
    process.env.ROLLOUT_TEST_CLUSTER_KEY = 'hvs.not-a-kms-key';
    const inv = await loadInventory(inventory('  cluster: { apiKey: { env: ROLLOUT_TEST_CLUSTER_KEY } }\n'));
    const err = String(await resolveVars(inv.vars, inv.file).catch((e: Error) => e));
    expect(err).toContain('vars.cluster.apiKey (environment variable ROLLOUT_TEST_CLUSTER_KEY): does not hold a MinKMS API key');
    expect(err).not.toContain('hvs.not-a-kms-key');
    delete process.env.ROLLOUT_TEST_CLUSTER_KEY;
    const missing = String(await resolveVars(inv.vars, inv.file).catch((e: Error) => e));
    expect(missing).toContain('vars.cluster.apiKey: environment variable ROLLOUT_TEST_CLUSTER_KEY is not set');
  });

  it('backup needs apiKey; paths must be absolute', async () => {
    const err = String(await loadInventory(inventory('  cluster: { backup: true, cli: minkms }\n')).catch((e: Error) => e));
    expect(err).toMatch(/vars\.cluster\.backup.*needs a SysAdmin API key/s);
    expect(err).toMatch(/vars\.cluster\.cli.*absolute path/s);
  });

  it('is not a playbook var: a playbook using it is told so, even where the values hold it', async () => {
    const p = await shippedPlaybook();
    const using = { ...p, phases: [{ ...p.phases[0]!, when: 'cluster', tasks: [{ kind: 'yaml.set' as const, file: 'config', path: 'x', value: { var: 'cluster' }, exclusive: false, exact: false }] }] };
    const problems = varsProblems(using, { vault: {}, cluster: { insecure: true } });
    expect(problems).toEqual([
      'phases[0].when: "cluster" is rollout\'s own setting (vars.cluster), not a var a playbook can use; use another name',
      'phases[0].tasks[0].value: var "cluster" is rollout\'s own setting (vars.cluster), not a var a playbook can use; use another name',
    ]);
  });
});
