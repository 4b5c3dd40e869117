import { describe, expect, it } from 'vitest';
import { computePhases } from '../../src/plan/build.js';
import { renderOrder, renderPlan } from '../../src/plan/render.js';
import type { Plan } from '../../src/plan/types.js';
import { createRedactor } from '../../src/util/redact.js';
import { CONFIG, ENV, HSM_KEY, SECRET, node, reader, shippedPlaybook, vars } from '../helpers/plan-inputs.js';

async function plan(): Promise<{ plan: Plan; redact: (s: string) => string }> {
  const playbook = await shippedPlaybook();
  const v = vars(true);
  const phases = await computePhases(reader({ '/etc/default/minkms': ENV, '/etc/minkms/config.yaml': CONFIG }), node, playbook, v);
  return {
    plan: {
      playbookName: playbook.name,
      phases: [
        { name: 'vault-hsm', description: '', enabled: true },
        { name: 'disable-local-hsm', description: '', enabled: true, when: 'disableLocalHsm' },
      ],
      nodes: [
        { node, status: 'ready', phases },
        { node: { ...node, name: 'kms-2', port: 2202 }, status: 'error', error: 'cannot connect to 127.0.0.1:2202: ECONNREFUSED' },
      ],
    },
    redact: createRedactor({ secrets: v.secrets, ...playbook.secrets }),
  };
}

describe('renderPlan', () => {
  it('shows both diffs with every secret redacted, then the restart order', async () => {
    const { plan: p, redact } = await plan();
    const text = renderPlan(p, redact);
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(HSM_KEY);
    expect(text).toMatchInlineSnapshot(`
      "=== kms-1 (root@127.0.0.1:2201)
      --- phase vault-hsm: /etc/minkms/config.yaml
      --- a/etc/minkms/config.yaml	kms-1 now
      +++ b/etc/minkms/config.yaml	kms-1 planned
      @@ -2,3 +2,11 @@
       # keep me
       admin:
         identity: h1:abc   # the admin
      +hsm:
      +  vault:
      +    server: https://vault.example.net:8200
      +    approle:
      +      id: role-4c1f
      +      secret: <redacted>
      +    transit:
      +      key: aistor-key-manager-hsm
      --- phase disable-local-hsm: /etc/default/minkms
      --- a/etc/default/minkms	kms-1 now
      +++ b/etc/default/minkms	kms-1 planned
      @@ -1,4 +1,3 @@
       # MinIO KMS environment
      -MINIO_KMS_HSM_KEY=<redacted>
       MINIO_KMS_VOLUME=/var/lib/minkms
       MINIO_KMS_OPTS="--host kms-1:7373 --config /etc/minkms/config.yaml"

      === kms-2 (root@127.0.0.1:2202)
        ! cannot plan this node: cannot connect to 127.0.0.1:2202: ECONNREFUSED

      Restart order (one node at a time, each gated on its journal):
        phase 1 vault-hsm: kms-1
        phase 2 disable-local-hsm: kms-1
        1 node(s) could not be planned: kms-2; apply refuses until every node can be
      "
    `);
  });

  it('with the cluster\'s API key, says that apply moves the leader last', async () => {
    const { plan: p } = await plan();
    expect(renderOrder(p).join('\n')).not.toContain('leader');
    const keyed = { ...p, nodes: p.nodes.map((n) => ({ ...n, node: { ...n.node, cluster: { insecure: false, cli: '/usr/local/bin/minkms', backup: false, backupDir: '/var/backups/minkms', apiKey: { env: 'K' } } } })) } as Plan;
    expect(renderOrder(keyed)).toContain("  (inventory order; apply moves the cluster's leader at that time to the end of each phase: vars.cluster.apiKey, unless --order inventory)");
  });
});
