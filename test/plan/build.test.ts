import { describe, expect, it } from 'vitest';
import { computePhases } from '../../src/plan/build.js';
import { CONFIG, ENV, node, reader, shippedPlaybook, vars } from '../helpers/plan-inputs.js';

describe('computePhases with the shipped playbook', () => {
  it('adds hsm.vault to the config named by --config and plans a restart', async () => {
    const phases = await computePhases(reader({ '/etc/default/minkms': ENV, '/etc/minkms/config.yaml': CONFIG }), node, await shippedPlaybook(), vars());
    expect(phases.map((p) => p.name)).toEqual(['vault-hsm']);
    const [change] = phases[0]!.changes;
    expect(change!.path).toBe('/etc/minkms/config.yaml');
    expect(change!.after.startsWith(CONFIG)).toBe(true);
    expect(change!.after).toContain('hsm:\n  vault:\n    server: https://vault.example.net:8200\n');
    expect(phases[0]!.restart).toEqual({ kind: 'restart', unit: 'minkms' });
  });

  it('follows --config in MINIO_KMS_OPTS to another path', async () => {
    const env = ENV.replace('/etc/minkms/config.yaml', '/srv/kms/other.yaml');
    const phases = await computePhases(reader({ '/etc/default/minkms': env, '/srv/kms/other.yaml': CONFIG }), node, await shippedPlaybook(), vars());
    expect(phases[0]!.changes[0]!.path).toBe('/srv/kms/other.yaml');
  });

  it('lets a node override both paths', async () => {
    const files = { '/opt/env': ENV, '/opt/kms.yaml': CONFIG };
    const phases = await computePhases(reader(files), { ...node, envFile: '/opt/env', configFile: '/opt/kms.yaml' }, await shippedPlaybook(), vars(true));
    expect(phases.flatMap((p) => p.changes.map((c) => c.path))).toEqual(['/opt/kms.yaml', '/opt/env']);
  });

  it('phase 2 removes the HSM key only when disableLocalHsm is true', async () => {
    const files = { '/etc/default/minkms': ENV, '/etc/minkms/config.yaml': CONFIG };
    const phases = await computePhases(reader(files), node, await shippedPlaybook(), vars(true));
    expect(phases.map((p) => p.name)).toEqual(['vault-hsm', 'disable-local-hsm']);
    const env = phases[1]!.changes[0]!;
    expect(env.after).not.toContain('MINIO_KMS_HSM_KEY');
    expect(env.after).toContain('MINIO_KMS_OPTS=');
    expect(phases[1]!.restart).toEqual({ kind: 'restart', unit: 'minkms' });
  });

  it('an up-to-date node has no change and no restart', async () => {
    const first = await computePhases(reader({ '/etc/default/minkms': ENV, '/etc/minkms/config.yaml': CONFIG }), node, await shippedPlaybook(), vars());
    const done = first[0]!.changes[0]!.after;
    const again = await computePhases(reader({ '/etc/default/minkms': ENV, '/etc/minkms/config.yaml': done }), node, await shippedPlaybook(), vars());
    expect(again[0]!.changes).toEqual([]);
    expect(again[0]!.restart).toBeNull();
    expect(again[0]!.unchanged[0]).toContain('already holds the planned values');
  });

  it('a missing config file is an error naming the path and where it came from', async () => {
    await expect(computePhases(reader({ '/etc/default/minkms': ENV }), node, await shippedPlaybook(), vars())).rejects.toThrow(
      /\/etc\/minkms\/config\.yaml does not exist \(path from --config in MINIO_KMS_OPTS of \/etc\/default\/minkms\)/,
    );
  });

  it('a config with an unexpected hsm block is refused', async () => {
    const config = `${CONFIG}hsm:\n  kes: {endpoint: x}\n`;
    await expect(computePhases(reader({ '/etc/default/minkms': ENV, '/etc/minkms/config.yaml': config }), node, await shippedPlaybook(), vars())).rejects.toThrow(
      /\/etc\/minkms\/config\.yaml: `hsm` already holds `hsm.kes`, and the playbook allows only `hsm.vault` there/,
    );
  });
});
