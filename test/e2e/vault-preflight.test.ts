import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  LAB_SECRET, NODES, allOutput, labAdminKey, fleetSnapshot, journal, nodeFile, onNode, resetLab, rollout, seedFile, serviceState, vaultDouble, writeInventory,
} from '../helpers/lab.js';

const KEY = 'aistor-key-manager-hsm';

// Runs `preflight` and then `apply --yes` and proves both stop before any node
// changes, each naming the cause.
async function expectCaught(inventory: string, cause: RegExp, extra: string[] = []): Promise<void> {
  const before = await fleetSnapshot();
  for (const command of ['preflight', 'apply'] as const) {
    const r = await rollout([command, inventory, ...(command === 'apply' ? ['--yes'] : []), ...extra]);
    expect(r.code, `${command} exit code; stderr: ${r.stderr}`).toBe(3);
    expect(r.stdout + r.stderr).toMatch(cause);
    expect(r.stderr).toContain('preflight failed, no node was changed');
  }
  expect(await fleetSnapshot()).toEqual(before);
}

describe('Vault preflight against the lab and the Vault double', () => {
  beforeEach(async () => {
    await resetLab();
  });

  it('passes every check on a healthy Vault and fleet, changing nothing, and revokes its token', async () => {
    const before = await fleetSnapshot();
    const r = await rollout(['preflight', writeInventory()]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const name of ['health', 'login', 'capabilities', 'hmac', 'encrypt/decrypt', 'revoke']) expect(r.stdout).toMatch(new RegExp(`ok +vault +${name.replace('/', '\\/')} `));
    for (const n of NODES) expect(r.stdout).toMatch(new RegExp(`ok +${n} +reaches vault +localhost resolves and TLS to localhost:8200 works from this node`));
    expect(r.stdout).toContain('consumes one use of a SecretID');
    // Without vars.cluster.apiKey the cluster's checks are the one skip.
    expect(r.stdout.split('\n').filter((l) => /^ +skip /.test(l))).toEqual([expect.stringMatching(/skip +cluster +membership +no vars\.cluster\.apiKey/)]);
    expect(r.stdout).toMatch(/Preflight passed: \d+ checks passed, some skipped \(see above\)\./);
    expect(await fleetSnapshot()).toEqual(before);
    const requests = await vaultDouble.requests();
    const calls = requests.map((q) => `${q.path} ${q.status}`);
    expect(calls).toEqual(expect.arrayContaining(['/v1/auth/approle/login 200', `/v1/transit/hmac/${KEY} 200`, '/v1/auth/token/revoke-self 204']));
    // sys/health once from here (asked while the nodes were connected), once from each node (curl).
    const health = requests.filter((q) => q.path === '/v1/sys/health');
    expect(health.filter((q) => !q.agent.startsWith('curl/'))).toHaveLength(1);
    expect(health.filter((q) => q.agent.startsWith('curl/'))).toHaveLength(NODES.length);
  });

  it('catches a wrong AppRole secret', async () => {
    await expectCaught(writeInventory({ secret: 'not-the-secret-id' }), /vault +login +AppRole login as role ID 3f1c2a9e-lab-role failed: HTTP 400: invalid role or secret ID/);
  });

  it('catches a wrong role ID', async () => {
    await expectCaught(writeInventory({ roleId: 'no-such-role' }), /AppRole login as role ID no-such-role failed: HTTP 400: invalid role or secret ID/);
  });

  it('catches a token without the hmac capability, naming it', async () => {
    await vaultDouble.update((s) => {
      delete s.namespaces['']!.policies!.minkms![`transit/hmac/${KEY}`];
    });
    await expectCaught(writeInventory(), new RegExp(`the token lacks update on transit/hmac/${KEY} \\(has: \\["deny"\\]\\)`));
  });

  it('catches a missing transit key', async () => {
    await vaultDouble.update((s) => {
      s.namespaces['']!.transit!.keys = [];
    });
    await expectCaught(writeInventory(), /HMAC with transit key aistor-key-manager-hsm \(mount transit\) failed: HTTP 400: encryption key not found: the transit key does not exist/);
  });

  it('catches a sealed Vault', async () => {
    await vaultDouble.update((s) => {
      s.sealed = true;
    });
    await expectCaught(writeInventory(), /Vault at https:\/\/localhost:8200 is sealed \(HTTP 503\)/);
  });

  it('catches Vault unreachable from one node only', async () => {
    // On kms-2 alone, `localhost` now points where nothing listens.
    await onNode('kms-2', "cp /etc/hosts /etc/hosts.orig && sed -i 's/^127\\.0\\.0\\.1\\s\\+localhost/127.0.0.3 localhost/' /etc/hosts");
    try {
      await expectCaught(writeInventory(), /FAIL +kms-2 +reaches vault +from this node: connection to localhost:8200 refused or unreachable/);
      const r = await rollout(['preflight', writeInventory()]);
      expect(r.stdout).toMatch(/ok +kms-1 +reaches vault/);
      expect(r.stdout).toMatch(/ok +kms-3 +reaches vault/);
    } finally {
      await onNode('kms-2', 'mv /etc/hosts.orig /etc/hosts');
    }
  });

  it('a node trusts Vault through its trust store: the hashed CA directory, else the bundle alone; a CA in neither fails', async () => {
    // kms-2 keeps the lab CA in its bundle only (no hash link); kms-3 in neither.
    const bundle = '/etc/ssl/certs/ca-certificates.crt';
    const dropLink = 'l=$(find /etc/ssl/certs -maxdepth 1 -lname rollout-lab-ca.pem) && [ -n "$l" ] && echo "$l" > /root/ca-link && mv "$l" /root/ca-link.target';
    const restoreLink = 'mv /root/ca-link.target "$(cat /root/ca-link)"';
    // The lab appended its CA to the rootfs bundle, as update-ca-certificates does.
    const dropFromBundle = `cp -p ${bundle} /root/bundle.orig && head -c $(( $(stat -c %s ${bundle}) - $(stat -c %s /usr/local/share/ca-certificates/rollout-lab-ca.crt) )) /root/bundle.orig > ${bundle}`;
    await onNode('kms-2', dropLink);
    await onNode('kms-3', `${dropLink} && ${dropFromBundle}`);
    try {
      await expectCaught(writeInventory(), /FAIL +kms-3 +reaches vault +from this node: the TLS certificate is not trusted by the node/);
      const r = await rollout(['preflight', writeInventory()]);
      expect(r.stdout).toMatch(/ok +kms-1 +reaches vault +localhost resolves and TLS/);
      expect(r.stdout).toMatch(/ok +kms-2 +reaches vault +localhost resolves and TLS/);
    } finally {
      await onNode('kms-2', restoreLink);
      await onNode('kms-3', `${restoreLink}; mv /root/bundle.orig ${bundle}`);
    }
  });

  it('catches a node without a journal file to follow', async () => {
    // An empty directory over the runtime journal (journald keeps writing to the files it holds open).
    await onNode('kms-2', 'mount -t tmpfs none /run/log/journal');
    try {
      await expectCaught(writeInventory(), /FAIL +kms-2 +journal +no journal file on this node/);
    } finally {
      await onNode('kms-2', 'umount /run/log/journal');
    }
  });

  it.each([
    ['both auth methods', 'both', /set exactly one authentication method: `approle` or `kubernetes` \(both are set\)/],
    ['no auth method', 'none', /set exactly one authentication method: `approle` or `kubernetes` \(neither is set\)/],
  ] as const)('refuses %s as invalid input, contacting nothing', async (_name, auth, message) => {
    const before = await fleetSnapshot();
    for (const command of ['preflight', 'apply']) {
      const r = await rollout([command, writeInventory({ auth }), '--yes'].slice(0, command === 'apply' ? 3 : 2));
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    expect(await vaultDouble.requests()).toEqual([]);
    expect(await fleetSnapshot()).toEqual(before);
  });

  it('refuses a missing env var for a secret, naming the inventory key', async () => {
    for (const command of ['preflight', 'apply']) {
      const r = await rollout([command, writeInventory()], { ROLLOUT_E2E_SECRET: '' });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('vars.vault.approle.secret: environment variable ROLLOUT_E2E_SECRET is not set');
    }
    expect(await vaultDouble.requests()).toEqual([]);
  });

  it('with the Vault checks skipped, a node with a bad secret fails its gate on the real login and is rolled back', async () => {
    const r = await rollout(['apply', writeInventory({ secret: 'not-the-secret-id' }), '--yes', '--skip-vault-checks']);
    expect(r.code).toBe(1);
    // This machine asked Vault nothing (the nodes' curl checks and logins are theirs).
    expect((await vaultDouble.requests()).filter((q) => q.path === '/v1/sys/health' && !q.agent.startsWith('curl/'))).toEqual([]);
    expect(r.stdout).toMatch(/skip +vault +checks +--skip-vault-checks/);
    expect(r.stderr).toContain('ROLLOUT STOPPED: kms-1 failed its gate after the change');
    expect(r.stderr).toContain('invalid role or secret ID');
    expect(nodeFile('kms-1', 'etc/minkms/config.yaml')).toEqual(seedFile('kms-1', 'config.yaml'));
    const state = await serviceState('kms-1');
    expect(state.ActiveState).toBe('active');
    expect((await journal('kms-1')).some((l) => l.invocation === state.InvocationID && /^HSM\s+local/.test(l.message))).toBe(true);
    expect(nodeFile('kms-2', 'etc/minkms/config.yaml')).toEqual(seedFile('kms-2', 'config.yaml'));
  });

  it('Kubernetes auth: preflight logs in with the role and JWT, apply writes the kubernetes block and the nodes log in with it', async () => {
    await vaultDouble.update((s) => {
      s.namespaces['']!.kubernetes = { mount: 'kubernetes', roles: { minkms: { jwt: LAB_SECRET, policies: ['minkms'] } } };
    });
    const inventory = writeInventory({ auth: 'kubernetes' });
    const pre = await rollout(['preflight', inventory]);
    expect(pre.code).toBe(0);
    expect(pre.stdout).toMatch(/Kubernetes login as role minkms \(mount kubernetes\) got a token/);
    const r = await rollout(['apply', inventory, '--yes']);
    expect(r.code).toBe(0);
    expect(nodeFile('kms-1', 'etc/minkms/config.yaml').toString()).toContain('    kubernetes:\n      role: minkms\n      jwt: ');
    expect(r.stdout).toMatch(/jwt: <redacted:[0-9a-f]{6}>/);
  });

  it('no secret (the cluster\'s API key included) appears in anything rollout printed or wrote, nor on a node\'s process list or journal during a run, nor in backup names', async () => {
    // Sample every process's command line on each node for as long as the apply runs.
    for (const n of NODES) await onNode(n, "rm -f /tmp/ps.log /tmp/ps.stop; nohup sh -c 'while [ ! -e /tmp/ps.stop ]; do ps -eww -o args= >> /tmp/ps.log; sleep 0.02; done' >/dev/null 2>&1 &");
    // The cluster's SysAdmin key too: membership and leader checks, and a `minkms backup` before the first change.
    const inventory = writeInventory({ disableLocalHsm: true, cluster: '{ apiKey: { env: ROLLOUT_E2E_KMS_KEY }, backup: true }' });
    const r = await rollout(['apply', inventory, '--yes']);
    expect(r.code).toBe(0);
    const seen: string[] = [];
    const backups: string[] = [];
    for (const n of NODES) {
      await onNode(n, 'touch /tmp/ps.stop');
      seen.push(await onNode(n, 'cat /tmp/ps.log'));
      backups.push(await onNode(n, 'find /var/backups/rollout'));
    }
    const ps = seen.join('\n');
    // The sampler really watched rollout's remote commands.
    expect(ps).toContain('rollout-restart minkms');
    expect(ps).toContain('rollout-probe minkms');
    // rollout's own command lines carry no run id, staged copy's name or backup path: a
    // local user watching `ps` cannot learn where root is about to write. (The tools its
    // scripts run name the files they act on: a staged copy only once created exclusively.)
    const runId = /Run (\S+): state in/.exec(r.stdout)![1]!;
    expect(backups.join('\n')).toContain(`/var/backups/rollout/${runId}/`);
    const commands = ps.split('\n').filter((l) => / rollout-(?:read|stage|restart|follow|probe|release|commit|restore|lock|cluster)\b/.test(l));
    for (const name of ['rollout-read', 'rollout-restart', 'rollout-probe', 'rollout-cluster']) expect(commands.join('\n')).toContain(name);
    // The minkms CLI it ran was seen too (stat and backup), its key in its environment only.
    expect(ps).toMatch(/minkms-sim\.mjs stat --json/);
    expect(ps).toMatch(/minkms-sim\.mjs backup minkms-\S+\.db\.gzip/);
    // The backup's sha256 in the report is the file's on the node.
    const report = JSON.parse(readFileSync(path.join(path.dirname(inventory), '.rollout', 'inventory', 'reports', /Run (\S+): state in/.exec(r.stdout)![1]!, 'report.json'), 'utf8')) as { kmsBackup: { node: string; path: string; sha256: string } };
    expect(report.kmsBackup.node).toBe('kms-1');
    expect((await onNode('kms-1', `sha256sum ${report.kmsBackup.path}`)).split(' ')[0]).toBe(report.kmsBackup.sha256);
    expect(await onNode('kms-1', `stat -c %a ${report.kmsBackup.path}`)).toBe('600\n');
    // Every file this run left beside the inventory (state, report) and every node's journal.
    const localFiles = readdirSync(path.dirname(inventory), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => readFileSync(path.join(e.parentPath, e.name), 'utf8'));
    const journals = await Promise.all(NODES.map((n) => onNode(n, 'journalctl --no-pager -o cat')));
    for (const line of commands) {
      expect(line).not.toContain(runId);
      expect(line).not.toMatch(/\.rollout-staged\.[0-9a-f]/);
      expect(line).not.toMatch(/\/var\/backups\/rollout\/\d{8}T/);
    }
    const hsmKey = seedFile('kms-1', 'minkms.env').toString().match(/MINIO_KMS_HSM_KEY=(\S+)/)![1]!;
    const adminKey = labAdminKey();
    for (const text of [ps, ...backups, ...allOutput, ...localFiles, ...journals]) expect(text).not.toContain(adminKey);
    for (const text of [ps, ...backups, ...allOutput]) {
      expect(text).not.toContain(LAB_SECRET);
      expect(text).not.toContain(hsmKey);
      expect(text).not.toMatch(/API Key\s+k1:/);
      expect(text).not.toMatch(/hvs\.[A-Za-z0-9]{8,}/);
    }
  });
});
