// Cluster-aware rollout on real lab nodes: each node's own KMS API, asked over
// HTTPS from the node (its --host, the lab CA from tls.ca), is part of the
// gate after a restart and of the health check of the other nodes before one.
import { readFileSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configState, NODES, clearKnob, onNode, resetLab, restartMinkms, rollout, serviceState, setKnob, writeInventory } from '../helpers/lab.js';

const fleetStates = () => NODES.map(configState);

/** kms-3's API requests since its api-log knob was read (PID.N CONN, User-Agent, path), as `[conn, agent]` pairs for /v1/health/ready. */
async function readinessRequests(): Promise<[string, string][]> {
  return (await onNode('kms-3', 'cat /var/lib/minkms/.lab-api-log')).trim().split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[2] === '/v1/health/ready')
    .map((f) => [f[0]!, f[1]!.replace(/\/.*/, '')]);
}

describe('cluster readiness over HTTPS', () => {
  beforeEach(async () => {
    await resetLab();
  });
  afterEach(async () => {
    for (const n of NODES) for (const k of ['ready-503', 'no-https', 'api-log']) clearKnob(n, k);
  });

  it('status shows each node\'s version from its API, `-` where the API does not answer', async () => {
    setKnob('kms-3', 'no-https');
    await onNode('kms-3', 'systemctl restart minkms');
    const r = await rollout(['status', writeInventory(), '--json']);
    const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.event === 'node-status');
    expect(rows.map((row) => [row.node, typeof row.version === 'string' && row.version !== '']))
      .toEqual([['kms-1', true], ['kms-2', true], ['kms-3', false]]);
    expect(rows[2]!.version).toBeNull();
    const table = await rollout(['status', writeInventory()]);
    expect(table.stdout.split('\n')[0]).toMatch(/ LAST RUN +VERSION +CREDENTIAL$/);
    // kms-3: no version (no API), no credential (its config has no Vault section yet).
    expect(table.stdout).toMatch(/\nkms-3 .* - +-\n?$/);
  });

  it('kms-2 logs its ready line but its API answers 503: restored from its backup, exit 1, kms-3 untouched', async () => {
    // Read at the next start: kms-2 serves 200 while kms-1 restarts, 503 after its own restart.
    setKnob('kms-2', 'ready-503');
    const before3 = (await serviceState('kms-3')).InvocationID;
    // A short wait for readiness (the default is the rest of the gate's 120 s).
    const inv = writeInventory();
    writeFileSync(inv, readFileSync(inv, 'utf8').replace('  disableLocalHsm: false\n', '  disableLocalHsm: false\n  cluster: { readyTimeoutSeconds: 3 }\n'));
    const r = await rollout(['apply', inv, '--yes']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('kms-2 failed its gate after the change');
    expect(r.stderr).toMatch(/the ready line was logged, but https:\/\/kms-2:\d+\/v1\/health\/ready \(asked on the node\) did not answer 200 within 3 s: HTTP 503/);
    expect(fleetStates()).toEqual(['new', 'old', 'old']);
    expect((await serviceState('kms-2')).ActiveState).toBe('active');
    expect((await serviceState('kms-3')).InvocationID).toBe(before3);
  });

  it('kms-3\'s API is not ready before kms-1 restarts: stop at once, exit 4 naming kms-3 and the status, nothing touched', async () => {
    setKnob('kms-3', 'ready-503');
    await onNode('kms-3', 'systemctl restart minkms');
    const before1 = (await serviceState('kms-1')).InvocationID;
    const r = await rollout(['apply', writeInventory(), '--yes']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('not restarting kms-1: another node is not healthy');
    expect(r.stderr).toContain('kms-3: minkms is active/running but its API is not ready (/v1/health/ready: HTTP 503');
    expect(fleetStates()).toEqual(['old', 'old', 'old']);
    expect((await serviceState('kms-1')).InvocationID).toBe(before1);
  });

  it('asks a node\'s readiness over a connection kept open through its sshd from one turn to the next; refused forwarding: by curl, the same outcome', async () => {
    setKnob('kms-3', 'api-log');
    await onNode('kms-3', 'rm -f /var/lib/minkms/.lab-api-log');
    await restartMinkms('kms-3');
    const r = await rollout(['apply', writeInventory(), '--yes']);
    expect(r.code, r.stderr).toBe(0);
    // Before kms-2's restart kms-3 was asked over the connection rollout opened after asking it by curl before kms-1's.
    const asked = await readinessRequests();
    const perConnection = new Map<string, number>();
    for (const [conn] of asked.filter(([, agent]) => agent === 'rollout')) perConnection.set(conn, (perConnection.get(conn) ?? 0) + 1);
    expect(Math.max(...perConnection.values())).toBeGreaterThanOrEqual(2);
    expect(asked.some(([, agent]) => agent === 'curl')).toBe(true);
    expect(fleetStates()).toEqual(['new', 'new', 'new']);

    await resetLab();
    // The lab key may no longer forward (as AllowTcpForwarding no: "administratively prohibited"); new logins only, no sshd reload.
    await onNode('kms-3', "sed -i 's/^ssh-/no-port-forwarding ssh-/' /root/.ssh/authorized_keys");
    try {
      setKnob('kms-3', 'api-log');
      await onNode('kms-3', 'rm -f /var/lib/minkms/.lab-api-log');
      await restartMinkms('kms-3');
      const refused = await rollout(['apply', writeInventory(), '--yes']);
      expect(refused.code, refused.stderr).toBe(0);
      const agents = (await readinessRequests()).map(([, agent]) => agent);
      expect(agents.length).toBeGreaterThanOrEqual(3);
      expect(new Set(agents)).toEqual(new Set(['curl']));
      expect(fleetStates()).toEqual(['new', 'new', 'new']);
    } finally {
      await onNode('kms-3', "sed -i 's/^no-port-forwarding //' /root/.ssh/authorized_keys");
    }
  });
});
