// The cluster as MinKMS reports it, on real lab nodes: with the SysAdmin key
// rollout asks `minkms stat --json` on a node, restarts the leader last, refuses
// a cluster whose members and inventory differ, and says what it skipped
// without the key. The leader is read here independently, from a node's API.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  configState, KMS_BASE_PORT, NODES, VAULT_CA, clearKnob, labAdminKey, onNode, resetLab, restartMinkms, rollout, serviceState, setKnob, writeInventory, type LabNode,
} from '../helpers/lab.js';

const WITH_KEY = '{ apiKey: { env: ROLLOUT_E2E_KMS_KEY } }';


type Status = { nodes_up: Record<string, { address: string; state: string }>; nodes_down: Record<string, string> };

/** The cluster status straight from a node's admin API (from this machine, trusting the lab CA): not through rollout. */
function clusterStatus(node: LabNode): Promise<Status> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host: '127.0.0.1', port: KMS_BASE_PORT + Number(node.slice(4)), path: '/v1/cluster/status', ca: readFileSync(VAULT_CA), headers: { authorization: `Bearer ${labAdminKey()}` }, timeout: 10_000 },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body) as Status) : reject(new Error(`HTTP ${res.statusCode}: ${body}`))));
      },
    );
    req.on('error', reject);
  });
}

async function leader(): Promise<LabNode> {
  const s = await clusterStatus('kms-1');
  const addr = Object.values(s.nodes_up).find((n) => n.state === 'Leader')!.address;
  return NODES.find((n) => addr.startsWith(`${n}:`))!;
}

// When the unit's current main process started, on the host's one monotonic clock.
async function startedAt(node: LabNode): Promise<number> {
  return Number((await onNode(node, 'systemctl show -p ExecMainStartTimestampMonotonic --value minkms')).trim());
}

describe('the cluster through minkms stat (vars.cluster.apiKey)', () => {
  beforeEach(async () => {
    await resetLab();
  });
  afterEach(() => {
    for (const n of NODES) clearKnob(n, 'drop-membership');
  });

  it('the leader restarts last; each node is back in the cluster before the next goes down', async () => {
    // Make the leader a node that is not last in the inventory: a restarted node never takes leadership back.
    if ((await leader()) === 'kms-3') await restartMinkms('kms-3');
    const lead = await leader();
    expect(lead).not.toBe('kms-3');
    const r = await rollout(['apply', writeInventory({ cluster: WITH_KEY }), '--yes']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`ok +cluster +members +3 members, all up, the same nodes as the inventory`));
    expect(r.stdout).toMatch(new RegExp(`ok +cluster +leader +${lead} leads; it restarts last in each phase`));
    expect(r.stdout).toContain(`Phase vault-hsm: ${lead} leads the cluster; it restarts last.`);
    expect(NODES.map(configState)).toEqual(['new', 'new', 'new']);
    // The leader's new process started after both others' (one host, one monotonic clock).
    const others = NODES.filter((n) => n !== lead);
    const leadStart = await startedAt(lead);
    for (const n of others) expect(await startedAt(n)).toBeLessThan(leadStart);
    // And the cluster is whole again, every member up.
    const after = await clusterStatus('kms-2');
    expect(Object.keys(after.nodes_up)).toHaveLength(3);
    expect(after.nodes_down).toEqual({});
  });

  it('a node that dropped out of the cluster: refused before any change, naming it (exit 3)', async () => {
    setKnob('kms-3', 'drop-membership');
    await restartMinkms('kms-3');
    const before = await Promise.all(NODES.map(async (n) => (await serviceState(n)).InvocationID));
    const r = await rollout(['apply', writeInventory({ cluster: WITH_KEY }), '--yes']);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/FAIL +cluster +members +2 of 2 members up \(asked on kms-1\): kms-3 \(kms-3:\d+\) is not a member of the cluster/);
    expect(NODES.map(configState)).toEqual(['old', 'old', 'old']);
    expect(await Promise.all(NODES.map(async (n) => (await serviceState(n)).InvocationID))).toEqual(before);
  });

  it('a wrong API key: a preflight failure naming the key reference, no stack trace, nothing changed', async () => {
    const r = await rollout(['apply', writeInventory({ cluster: WITH_KEY }), '--yes'], { ROLLOUT_E2E_KMS_KEY: 'k1:not-the-admin-key-0000000000000000000000000' });
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/FAIL +cluster +api-key +vars\.cluster\.apiKey \(environment variable ROLLOUT_E2E_KMS_KEY\) was refused by `minkms stat` on kms-1 \(exit 1: not authorized: invalid API key\)/);
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/\n\s+at .*\.js:\d+/);
    expect(`${r.stdout}${r.stderr}`).not.toContain('k1:not-the-admin-key');
    expect(NODES.map(configState)).toEqual(['old', 'old', 'old']);
  });

  it('without the key the run works and says once what it did not check', async () => {
    const r = await rollout(['apply', writeInventory(), '--yes']);
    expect(r.code).toBe(0);
    const skipped = r.stdout.split('\n').filter((l) => l.includes('membership, nodes-down and leader checks skipped'));
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatch(/skip +cluster +membership +no vars\.cluster\.apiKey/);
    expect(NODES.map(configState)).toEqual(['new', 'new', 'new']);
  });
});
