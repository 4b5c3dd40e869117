// What planning reads on a real node and what apply then writes: odd config
// paths, a directory others can write in, a symlinked config, a secret going
// into a config others can read.
import { appendFileSync } from 'node:fs';
import { beforeEach, describe, expect, it } from 'vitest';
import { VAULT_BLOCK, fleetSnapshot, nodeFile, nodeFileStat, onNode, resetLab, rollout, seedFile, writeInventory } from '../helpers/lab.js';

const setConfigOption = (value: string) => `sed -i 's#--config /etc/minkms/config.yaml#--config ${value}#' /etc/default/minkms`;

describe('node files against the lab fleet', () => {
  beforeEach(async () => {
    await resetLab();
  });

  it('refuses --config /dev/zero, naming the path and where it came from, and apply changes nothing', async () => {
    await onNode('kms-2', setConfigOption('/dev/zero'));
    const inventory = writeInventory();
    const before = await fleetSnapshot();
    const plan = await rollout(['plan', inventory]);
    expect(plan.code).toBe(3);
    expect(plan.stdout).toMatch(/=== kms-2 .*\n {2}! cannot plan this node: \/dev\/zero is a character device, not a regular file; rollout reads and writes regular files only \(path from --config in MINIO_KMS_OPTS of \/etc\/default\/minkms\); set nodes\[\]\.configFile/);
    const apply = await rollout(['apply', inventory, '--yes']);
    expect(apply.code).toBe(3);
    expect(await fleetSnapshot()).toEqual(before);
  });

  it('resolves a relative --config against the unit\'s WorkingDirectory (unset: /), and says so', async () => {
    await onNode('kms-1', setConfigOption('etc/minkms/config.yaml'));
    const plan = await rollout(['plan', writeInventory({ nodes: ['kms-1'] })]);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toContain("--- phase vault-hsm: /etc/minkms/config.yaml\n  path: etc/minkms/config.yaml (--config in MINIO_KMS_OPTS of /etc/default/minkms, relative to minkms's WorkingDirectory / (unset: systemd's default))\n");
  });

  it.each([
    ['writable by every user', 'chmod 0777 /etc/minkms', /kms-2 +directories +\/etc\/minkms \(owner 0:\d+, mode 0777\): every user can write in it, so a non-root user could plant a file or link where root writes \/etc\/minkms\/config\.yaml; run `chown root: \/etc\/minkms; chmod go-w \/etc\/minkms` on the node/],
    ['owned by the ops user', 'chown ops /etc/minkms', /kms-2 +directories +\/etc\/minkms \(owner 1000:\d+, mode 0750\): its owner, uid 1000, can write in it/],
  ])('refuses, in preflight and apply, a config directory %s; nothing on any node changes', async (_name, command, reason) => {
    await onNode('kms-2', command);
    const inventory = writeInventory();
    const before = await fleetSnapshot();
    const preflight = await rollout(['preflight', inventory]);
    expect(preflight.code).toBe(3);
    expect(preflight.stdout).toMatch(new RegExp(`FAIL  ${reason.source}`));
    const apply = await rollout(['apply', inventory, '--yes']);
    expect(apply.code).toBe(3);
    expect(apply.stdout).toMatch(new RegExp(`FAIL  ${reason.source}`));
    expect(apply.stderr).toContain('kms-2 directories: /etc/minkms (owner ');
    expect(await fleetSnapshot()).toEqual(before);
  });

  it('keeps a symlinked config a link: the plan names both, apply writes the target', async () => {
    await onNode('kms-1', [
      'install -d -m 0750 -o root -g minkms-user /etc/minkms/real',
      'mv /etc/minkms/config.yaml /etc/minkms/real/config.yaml',
      'ln -s /etc/minkms/real/config.yaml /etc/minkms/config.yaml',
    ].join(' && '));
    const inventory = writeInventory({ nodes: ['kms-1'] });
    const plan = await rollout(['plan', inventory]);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toContain('--- phase vault-hsm: /etc/minkms/config.yaml -> /etc/minkms/real/config.yaml\n--- a/etc/minkms/real/config.yaml');
    const apply = await rollout(['apply', inventory, '--yes']);
    expect(apply.code).toBe(0);
    expect((await onNode('kms-1', 'readlink /etc/minkms/config.yaml')).trim()).toBe('/etc/minkms/real/config.yaml');
    expect(nodeFile('kms-1', 'etc/minkms/real/config.yaml').toString()).toBe(`${seedFile('kms-1', 'config.yaml').toString()}${VAULT_BLOCK}`);
    expect(nodeFileStat('kms-1', 'etc/minkms/real/config.yaml').mode).toBe(0o640);
    const runId = /Run (\S+): state/.exec(apply.stdout)![1]!;
    expect(await onNode('kms-1', `cat /var/backups/rollout/${runId}/etc/minkms/real/config.yaml`)).toBe(seedFile('kms-1', 'config.yaml').toString());
  });

  it('refuses a config others can read by default; with secretFiles tighten, apply writes it 0640 and the backup keeps 0644', async () => {
    await onNode('kms-1', 'chmod 0644 /etc/minkms/config.yaml');
    const inventory = writeInventory({ nodes: ['kms-1'] });
    const before = await fleetSnapshot();
    const refused = await rollout(['plan', inventory]);
    expect(refused.code).toBe(3);
    expect(refused.stdout).toContain('! cannot plan this node: /etc/minkms/config.yaml is mode 0644, readable by every local user, and its new content holds a secret from the inventory; make it unreadable to others first (`chmod o-rwx /etc/minkms/config.yaml` on the node), or set secretFiles.othersReadable in the inventory: tighten (rollout writes it mode 0640) or allow (it stays 0644)');
    expect((await rollout(['apply', inventory, '--yes'])).code).toBe(3);
    expect(await fleetSnapshot()).toEqual(before);

    appendFileSync(inventory, 'secretFiles:\n  othersReadable: tighten\n');
    const apply = await rollout(['apply', inventory, '--yes']);
    expect(apply.code).toBe(0);
    expect(apply.stdout).toContain('--- phase vault-hsm: /etc/minkms/config.yaml\n  mode 0644 -> 0640 (secretFiles.othersReadable: tighten)\n');
    expect(apply.stdout).toMatch(/ok {4}kms-1 +secret files +\/etc\/minkms\/config\.yaml mode 0644 -> 0640/);
    expect(nodeFileStat('kms-1', 'etc/minkms/config.yaml')).toMatchObject({ uid: 0, mode: 0o640 });
    expect(nodeFile('kms-1', 'etc/minkms/config.yaml').toString()).toContain(VAULT_BLOCK);
    const runId = /Run (\S+): state/.exec(apply.stdout)![1]!;
    expect((await onNode('kms-1', `stat -c %a /var/backups/rollout/${runId}/etc/minkms/config.yaml`)).trim()).toBe('644');
  });
});
