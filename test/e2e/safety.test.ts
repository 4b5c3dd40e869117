import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  LAB_DIR, LAB_SECRET, NODES, fleetSnapshot, journal, labHsmKey, nodeFile, nodeFileStat, onNode, resetLab, rollout, seedFile, serviceState, writeInventory,
} from '../helpers/lab.js';

function knownHostsVariant(edit: (lines: string[]) => string[]): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'rollout-kh-')), 'known_hosts');
  const lines = readFileSync(path.join(LAB_DIR, 'known_hosts'), 'utf8').trim().split('\n');
  writeFileSync(file, `${edit(lines).join('\n')}\n`);
  return file;
}

describe('safety against the lab fleet', () => {
  beforeEach(async () => {
    await resetLab();
  });

  it('refuses a node whose host key is unknown, in plan and in apply, changing nothing', async () => {
    const knownHosts = knownHostsVariant((lines) => lines.filter((l) => !l.startsWith('[127.0.0.1]:2202 ')));
    const inventory = writeInventory({ knownHosts });
    const before = await fleetSnapshot();
    const plan = await rollout(['plan', inventory]);
    expect(plan.code).toBe(3);
    expect(plan.stdout).toMatch(/=== kms-2 .*\n {2}! cannot plan this node: host key of \[127\.0\.0\.1\]:2202 is not in .*known_hosts \(server offers ssh-ed25519 SHA256:/);
    const apply = await rollout(['apply', inventory, '--yes']);
    expect(apply.code).toBe(3);
    expect(apply.stderr).toContain('kms-2: host key of [127.0.0.1]:2202 is not in');
    expect(await fleetSnapshot()).toEqual(before);
  });

  it('refuses a node whose host key changed', async () => {
    const knownHosts = knownHostsVariant((lines) => {
      const key1 = lines[0]!.split(' ').slice(1).join(' ');
      return lines.map((l) => (l.startsWith('[127.0.0.1]:2202 ') ? `[127.0.0.1]:2202 ${key1}` : l));
    });
    const r = await rollout(['plan', writeInventory({ knownHosts })]);
    expect(r.code).toBe(3);
    expect(r.stdout).toContain('HOST KEY CHANGED for [127.0.0.1]:2202');
  });

  it('accepts hashed known_hosts entries', async () => {
    const knownHosts = knownHostsVariant((l) => l);
    execFileSync('ssh-keygen', ['-H', '-f', knownHosts], { stdio: 'ignore' });
    expect(readFileSync(knownHosts, 'utf8')).not.toContain('127.0.0.1');
    const r = await rollout(['plan', writeInventory({ knownHosts })]);
    expect(r.code).toBe(0);
  });

  it('reports an unreachable node and a config that does not parse, and apply then changes nothing', async () => {
    await onNode('kms-2', "printf 'version: v1\\nadmin: [unclosed\\n' > /etc/minkms/config.yaml");
    const inventory = writeInventory();
    writeFileSync(inventory, readFileSync(inventory, 'utf8').replace('nodes:\n', 'nodes:\n  - { name: kms-9, host: 127.0.0.1, port: 2299 }\n'));
    const before = await fleetSnapshot();
    const plan = await rollout(['plan', inventory]);
    expect(plan.code).toBe(3);
    expect(plan.stdout).toContain('=== kms-9 (root@127.0.0.1:2299)\n  ! cannot plan this node: cannot connect to 127.0.0.1:2299: ECONNREFUSED');
    expect(plan.stdout).toMatch(/=== kms-2 .*\n {2}! cannot plan this node: \/etc\/minkms\/config\.yaml: YAML does not parse at line \d: Flow sequence/);
    const apply = await rollout(['apply', inventory, '--yes']);
    expect(apply.code).toBe(3);
    expect(await fleetSnapshot()).toEqual(before);
  });

  it('names the file and key of a bad inventory and exits 2 without connecting', async () => {
    const inventory = writeInventory();
    const text = readFileSync(inventory, 'utf8').replace('  disableLocalHsm', '  disableLocalHSM');
    writeFileSync(inventory, text);
    const line = text.split('\n').findIndex((l) => l.includes('disableLocalHSM')) + 1;
    const r = await rollout(['plan', inventory]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`error: ${inventory}:\n  - line ${line}: vars.disableLocalHSM: unknown key`);
  });

  it('works through sudo for a non-root login and keeps owner and mode', async () => {
    const inventory = writeInventory({ user: 'ops' });
    const stat = nodeFileStat('kms-1', 'etc/minkms/config.yaml');
    const r = await rollout(['apply', inventory, '--yes']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const n of NODES) {
      expect(nodeFile(n, 'etc/minkms/config.yaml').toString()).toContain('    approle:\n      id: 3f1c2a9e-lab-role\n');
    }
    expect(nodeFileStat('kms-1', 'etc/minkms/config.yaml')).toEqual(stat);
    // The backup is root-only and keeps the original's owner and mode.
    const backups = await onNode('kms-1', 'stat -c "%a %u:%g %n" /var/backups/rollout /var/backups/rollout/*/etc/minkms/config.yaml');
    expect(backups).toMatch(/^700 0:0 \/var\/backups\/rollout\n/);
    expect(backups).toContain(`${stat.mode.toString(8)} ${stat.uid}:${stat.gid} /var/backups/rollout/`);
  });

  it('after a successful run, backups older than the newest `backups.keep` runs are pruned', async () => {
    for (const n of NODES) await onNode(n, 'mkdir -p /var/backups/rollout/20200101T000000Z-aaaaaa/etc && touch /var/backups/rollout/keep-me-not-a-run');
    const inventory = writeInventory();
    writeFileSync(inventory, readFileSync(inventory, 'utf8').replace('nodes:\n', 'backups:\n  keep: 1\nnodes:\n'));
    const r = await rollout(['apply', inventory, '--yes']);
    expect(r.code).toBe(0);
    const runId = /Run (\S+): state in/.exec(r.stdout)![1]!;
    for (const n of NODES) expect((await onNode(n, 'ls -1 /var/backups/rollout')).trim().split('\n')).toEqual([runId, 'keep-me-not-a-run']);
  });

  it('phase 2 removes the local HSM key only after phase 1 was ready on every node', async () => {
    const inventory = writeInventory({ disableLocalHsm: true });
    const startUs = Date.now() * 1000;
    const r = await rollout(['apply', inventory, '--yes']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/-MINIO_KMS_HSM_KEY=<redacted:[0-9a-f]{6}>/);
    expect(r.stdout).not.toContain(labHsmKey());
    expect(r.stdout).not.toContain(LAB_SECRET);

    const phase1Ready: number[] = [];
    const phase2Stop: number[] = [];
    for (const n of NODES) {
      const seedEnv = seedFile(n, 'minkms.env').toString();
      expect(nodeFile(n, 'etc/default/minkms').toString()).toBe(seedEnv.replace(/^MINIO_KMS_HSM_KEY=.*\n/m, ''));
      const lines = (await journal(n)).filter((l) => l.us >= startUs);
      const stops = lines.filter((l) => l.pid === '1' && l.message.startsWith('Stopping '));
      const readies = lines.filter((l) => l.pid !== '1' && l.message.includes('=> Server is up and running'));
      expect(stops).toHaveLength(2);
      expect(readies).toHaveLength(2);
      phase1Ready.push(readies[0]!.us);
      phase2Stop.push(stops[1]!.us);
      const state = await serviceState(n);
      expect(state.ActiveState).toBe('active');
      // The process running now has no local key and runs on Vault.
      expect((await journal(n)).some((l) => l.invocation === state.InvocationID && /^HSM\s+vault/.test(l.message))).toBe(true);
    }
    expect(Math.min(...phase2Stop)).toBeGreaterThan(Math.max(...phase1Ready));
  });

  it('prune removes the backups that still hold the removed HSM key, once the run is done; refused while the last run is not', async () => {
    const inventory = writeInventory({ disableLocalHsm: true });
    for (const n of NODES) await onNode(n, 'mkdir -p /var/backups/rollout/20200101T000000Z-aaaaaa/etc');
    const r = await rollout(['apply', inventory, '--yes']);
    expect(r.code).toBe(0);
    const runId = /Run (\S+): state in/.exec(r.stdout)![1]!;
    const key = labHsmKey();
    // The backups of /etc/default/minkms still hold the key the run removed: apply and its report say so.
    for (const n of NODES) expect(await onNode(n, 'cat /var/backups/rollout/*/etc/default/minkms')).toContain(key);
    expect(r.stdout).toContain(`Note: the backups this run took on kms-1, kms-2, kms-3 (/etc/default/minkms) still hold MINIO_KMS_HSM_KEY, which it removed from the files. Once the run is verified: rollout prune ${inventory}`);
    const report = readFileSync(/Report: (\S+report\.md)/.exec(r.stdout)![1]!, 'utf8');
    expect(report).toContain(`- kms-2: \`/var/backups/rollout/${runId}/etc/default/minkms\` (of \`/etc/default/minkms\`) holds MINIO_KMS_HSM_KEY`);

    // A last run that is not done keeps its backups: rollback may need them.
    const stateFile = path.join(path.dirname(inventory), '.rollout', 'inventory', 'runs', `${runId}.json`);
    const state = readFileSync(stateFile, 'utf8');
    writeFileSync(stateFile, state.replace('"status": "done"', '"status": "stopped"'));
    const refused = await rollout(['prune', inventory, '--yes']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain(`the last run ${runId} ended stopped`);
    for (const n of NODES) expect((await onNode(n, 'ls /var/backups/rollout')).trim().split('\n')).toEqual(['20200101T000000Z-aaaaaa', runId]);
    writeFileSync(stateFile, state);

    const kept = await rollout(['prune', inventory, '--yes', '--keep', '1']);
    expect(kept.code).toBe(0);
    expect(kept.stdout).toContain('kms-1: removed 20200101T000000Z-aaaaaa');
    for (const n of NODES) expect((await onNode(n, 'ls /var/backups/rollout')).trim()).toBe(runId);

    const all = await rollout(['prune', inventory, '--yes']);
    expect(all.code).toBe(0);
    expect(all.stdout).toContain(`kms-2: removed ${runId}`);
    for (const n of NODES) {
      expect(await onNode(n, 'ls -A /var/backups/rollout')).toBe('');
      expect(await onNode(n, `grep -rl -- '${key}' /var/backups /run/rollout /etc 2>/dev/null || true`)).toBe('');
      expect(await onNode(n, 'ls /run/rollout/lock.json 2>&1 || true')).toMatch(/No such file/);
    }
    for (const text of [kept.stdout, kept.stderr, all.stdout, all.stderr]) expect(text).not.toContain(key);
  });

  it('plan --out refuses to overwrite the inventory (or any file that is not a saved plan), before connecting', async () => {
    const inventory = writeInventory();
    const before = readFileSync(inventory, 'utf8');
    const r = await rollout(['plan', inventory, '--out', inventory]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--out ${inventory} already exists and is not a saved plan (it would be overwritten); choose a new file for the plan`);
    expect(readFileSync(inventory, 'utf8')).toBe(before);
  });

  it('refuses to keep backups under a backup root that is a link another user planted: staging stops the run, nothing changed', async () => {
    await onNode('kms-2', 'rm -rf /var/backups/rollout && install -d -o ops -g ops /tmp/ops-owned && ln -s /tmp/ops-owned /var/backups/rollout');
    try {
      const before = await fleetSnapshot();
      const r = await rollout(['apply', writeInventory(), '--yes']);
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/kms-2: staging failed: .*: \/var\/backups\/rollout is not a directory of this user's own \(a link, or another user's\): refusing to keep backups there/);
      expect(await onNode('kms-2', 'ls -A /tmp/ops-owned')).toBe('');
      const after = await fleetSnapshot();
      for (const n of NODES) expect({ ...(after[n] as object), backups: '' }).toEqual({ ...(before[n] as object), backups: '' });
    } finally {
      await onNode('kms-2', 'rm -f /var/backups/rollout && rm -rf /tmp/ops-owned');
    }
  });
});
