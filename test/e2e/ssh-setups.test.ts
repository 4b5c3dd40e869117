// SSH as people have it: ~/.ssh/config aliases and a bastion (ProxyJump), keys in
// ssh-agent, hashed known_hosts, and first-seen host keys recorded only when asked.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LAB_DIR, BASE_PORT, SUDO_PASSWORD, VAULT_CA, VAULT_SERVER, addPasswordSudoUser, nodeFile, onNode, resetLab, rollout, writeInventory } from '../helpers/lab.js';

let dir: string;
const KNOWN = path.join(LAB_DIR, 'known_hosts');
const KEY = path.join(LAB_DIR, 'id_ed25519');

/** An inventory naming nodes by alias only, with the given ssh section. */
function inventory(ssh: string, hosts: string[]): string {
  const file = path.join(dir, 'inventory.yaml');
  writeFileSync(file, `version: v1
ssh:
${ssh}
nodes:
${hosts.map((h) => `  - host: ${h}`).join('\n')}
preflight:
  vaultCaFile: ${VAULT_CA}
vars:
  vault:
    server: ${VAULT_SERVER}
    approle: { id: 3f1c2a9e-lab-role, secret: { env: ROLLOUT_E2E_SECRET } }
    transit: { key: aistor-key-manager-hsm }
`);
  return file;
}

const NO_AGENT = { SSH_AUTH_SOCK: '' };

describe('SSH setups', () => {
  let agentPid: string | null = null;
  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'rollout-ssh-'));
    await resetLab();
  });
  afterEach(() => {
    if (agentPid) spawnSync('kill', [agentPid]);
    agentPid = null;
  });

  it('~/.ssh/config: aliases, HostName, Port, User and IdentityFile from it, through a bastion (ProxyJump) as a non-root user', async () => {
    const config = path.join(dir, 'ssh_config');
    writeFileSync(config, `Host bastion
  HostName 127.0.0.1
  Port ${BASE_PORT + 1}
  User ops
Host kms-2 kms-3
  ProxyJump bastion
Host kms-2
  HostName 127.0.0.1
  Port ${BASE_PORT + 2}
Host kms-3
  HostName 127.0.0.1
  Port ${BASE_PORT + 3}
Host *
  User root
  IdentityFile ${KEY}
`);
    const since = (await onNode('kms-1', 'date +%s')).trim();
    const r = await rollout(['plan', inventory(`  config: ${config}\n  knownHosts: ${KNOWN}`, ['kms-2', 'kms-3'])], NO_AGENT);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`=== kms-2 (root@127.0.0.1:${BASE_PORT + 2})`);
    expect(r.stdout).toContain(`=== kms-3 (root@127.0.0.1:${BASE_PORT + 3})`);
    // Both connections went through the bastion: kms-1's sshd let `ops` in, once per node.
    const logins = await onNode('kms-1', `journalctl -u ssh --since @${since} --no-pager -o cat | grep -c 'Accepted publickey for ops' || true`);
    expect(Number(logins.trim())).toBe(2);
  });

  it('a key in ssh-agent, no identity file anywhere; without the agent the login is refused', async () => {
    const agent = execFileSync('ssh-agent', ['-s', '-a', path.join(dir, 'agent.sock')], { encoding: 'utf8' });
    agentPid = /SSH_AGENT_PID=(\d+)/.exec(agent)![1]!;
    const sock = path.join(dir, 'agent.sock');
    execFileSync('ssh-add', ['-q', KEY], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: 'ignore' });
    const inv = inventory(`  config: none\n  knownHosts: ${KNOWN}\n  port: ${BASE_PORT + 1}`, ['127.0.0.1']);
    const withAgent = await rollout(['plan', inv], { SSH_AUTH_SOCK: sock });
    expect(withAgent.code).toBe(0);
    const without = await rollout(['plan', inv], NO_AGENT);
    expect(without.code).toBe(3);
    expect(without.stdout + without.stderr).toMatch(/authentication as root on 127\.0\.0\.1:\d+ failed/);
  });

  it('hashed known_hosts work; a first-seen key is refused unless --accept-new-host-keys records it; a changed key is refused even then', async () => {
    const known = path.join(dir, 'known_hosts');
    copyFileSync(KNOWN, known);
    execFileSync('ssh-keygen', ['-H', '-f', known], { stdio: 'ignore' });
    const lines = readFileSync(known, 'utf8').split('\n').filter((l) => l.startsWith('|1|'));
    expect(lines.length).toBeGreaterThanOrEqual(3);
    const ssh = (port: number) => `  config: none\n  knownHosts: ${known}\n  identityFile: ${KEY}\n  port: ${port}`;
    expect((await rollout(['plan', inventory(ssh(BASE_PORT + 1), ['127.0.0.1'])], NO_AGENT)).code).toBe(0);

    // kms-2's key forgotten: unknown is refused, then recorded when asked.
    const kms2 = execFileSync('ssh-keygen', ['-F', `[127.0.0.1]:${BASE_PORT + 2}`, '-f', known], { encoding: 'utf8' }).split('\n').find((l) => l.startsWith('|1|'))!;
    writeFileSync(known, readFileSync(known, 'utf8').replace(`${kms2}\n`, ''));
    const inv = inventory(ssh(BASE_PORT + 2), ['127.0.0.1']);
    const refused = await rollout(['plan', inv], NO_AGENT);
    expect(refused.code).toBe(3);
    expect(refused.stdout + refused.stderr).toContain(`host key of [127.0.0.1]:${BASE_PORT + 2} is not in ${known}`);
    const accepted = await rollout(['plan', inv, '--accept-new-host-keys'], NO_AGENT);
    expect(accepted.code).toBe(0);
    expect(accepted.stderr).toMatch(new RegExp(`note: 127\\.0\\.0\\.1: recorded the new host key of \\[127\\.0\\.0\\.1\\]:${BASE_PORT + 2} \\(ssh-ed25519 SHA256:\\S+\\) in `));
    expect((await rollout(['plan', inv], NO_AGENT)).code).toBe(0);

    // A changed key (kms-3's recorded as kms-2's) stays refused.
    const key3 = readFileSync(KNOWN, 'utf8').split('\n').find((l) => l.startsWith(`[127.0.0.1]:${BASE_PORT + 3} `))!.split(' ').slice(1).join(' ');
    writeFileSync(known, `[127.0.0.1]:${BASE_PORT + 2} ${key3}\n`);
    const changed = await rollout(['plan', inv, '--accept-new-host-keys'], NO_AGENT);
    expect(changed.code).toBe(3);
    expect(changed.stdout + changed.stderr).toContain('HOST KEY CHANGED');
  });

  it('sudo that asks for a password: given by the inventory (on stdin, never a command line) it applies; without it and without a terminal, a clear refusal', async () => {
    await addPasswordSudoUser('kms-1');
    const base = writeInventory({ user: 'pwsudo', nodes: ['kms-1'] });
    const refused = await rollout(['plan', base], NO_AGENT);
    expect(refused.code).toBe(3);
    expect(refused.stdout + refused.stderr).toContain('asks pwsudo for a password and there is no terminal to ask on; set ssh.sudoPassword');

    writeFileSync(base, readFileSync(base, 'utf8').replace('ssh:\n', 'ssh:\n  sudoPassword: { env: ROLLOUT_E2E_SUDO }\n'));
    const r = await rollout(['apply', base, '--yes'], { ...NO_AGENT, ROLLOUT_E2E_SUDO: SUDO_PASSWORD });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(nodeFile('kms-1', 'etc/minkms/config.yaml').toString()).toContain('hsm:');
    expect(r.stdout).not.toContain(SUDO_PASSWORD);
  });
});
