// SSH as people have it: ~/.ssh/config aliases and a bastion (ProxyJump), keys in
// ssh-agent, hashed known_hosts, and first-seen host keys recorded only when asked.
import { execFile, execFileSync, spawnSync } from 'node:child_process';
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

/** Runs a command on a node as `pwsudo` (see addPasswordSudoUser), `input` on its stdin. */
function asPwsudo(node: 'kms-1', command: string, input = ''): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    const child = execFile('ssh', [
      '-i', KEY, '-o', `UserKnownHostsFile=${KNOWN}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes',
      '-p', String(BASE_PORT + Number(node.slice(4))), 'pwsudo@127.0.0.1', command,
    ], (err, stdout) => resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout }));
    child.stdin!.end(input);
  });
}

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

    // kms-2's key forgotten (and the file left without a final newline, as an editor may):
    // unknown is refused, then recorded when asked, on a line of its own.
    const kms2 = execFileSync('ssh-keygen', ['-F', `[127.0.0.1]:${BASE_PORT + 2}`, '-f', known], { encoding: 'utf8' }).split('\n').find((l) => l.startsWith('|1|'))!;
    writeFileSync(known, readFileSync(known, 'utf8').replace(`${kms2}\n`, '').replace(/\n$/, ''));
    const inv = inventory(ssh(BASE_PORT + 2), ['127.0.0.1']);
    const refused = await rollout(['plan', inv], NO_AGENT);
    expect(refused.code).toBe(3);
    expect(refused.stdout + refused.stderr).toContain(`host key of [127.0.0.1]:${BASE_PORT + 2} is not in ${known}`);
    const accepted = await rollout(['plan', inv, '--accept-new-host-keys'], NO_AGENT);
    expect(accepted.code).toBe(0);
    expect(accepted.stderr).toMatch(new RegExp(`note: 127\\.0\\.0\\.1: recorded the new host key of \\[127\\.0\\.0\\.1\\]:${BASE_PORT + 2} \\(ssh-ed25519 SHA256:\\S+\\) in `));
    expect((await rollout(['plan', inv], NO_AGENT)).code).toBe(0);
    expect(readFileSync(known, 'utf8')).toMatch(/^(\S+ \S+ \S+\n)+$/);

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

  it('sudo with credentials cached for every session (timestamp_type=global): still asks for the password, which sudo reads and the remote commands never see', async () => {
    await addPasswordSudoUser('kms-1', { sharedTimestamp: true });
    try {
      // A timestamp cached by another session, as an operator's own `sudo` leaves it.
      expect((await asPwsudo('kms-1', "sudo -S -p '' true", `${SUDO_PASSWORD}\n`)).code).toBe(0);
      expect(await asPwsudo('kms-1', 'sudo -n true && echo cached')).toEqual({ code: 0, stdout: 'cached\n' });

      // The cache does not pass for passwordless sudo: it can expire in the middle of a run.
      const base = writeInventory({ user: 'pwsudo', nodes: ['kms-1'] });
      const refused = await rollout(['plan', base], NO_AGENT);
      expect(refused.code).toBe(3);
      expect(refused.stdout + refused.stderr).toContain('asks pwsudo for a password and there is no terminal to ask on');

      // Every command's sudo reads the password, cached timestamp or not: the lock and the scripts get their own stdin.
      expect((await asPwsudo('kms-1', 'sudo -n true')).code).toBe(0);
      writeFileSync(base, readFileSync(base, 'utf8').replace('ssh:\n', 'ssh:\n  sudoPassword: { env: ROLLOUT_E2E_SUDO }\n'));
      const r = await rollout(['apply', base, '--yes'], { ...NO_AGENT, ROLLOUT_E2E_SUDO: SUDO_PASSWORD });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(nodeFile('kms-1', 'etc/minkms/config.yaml').toString()).toContain('hsm:');
      expect(r.stdout + r.stderr).not.toContain(SUDO_PASSWORD);
      expect(await onNode('kms-1', 'test -e /run/rollout/lock.json && echo held || echo free')).toBe('free\n');
      // Nowhere on the node: files, the journal (/run/log), backups, state.
      const found = await onNode('kms-1', `grep -rlaF -e ${SUDO_PASSWORD} /etc /run /var /tmp /root /home /opt /srv 2>/dev/null || true`);
      expect(found).toBe('');
    } finally {
      await addPasswordSudoUser('kms-1');
    }
  });

  it('a node whose only recorded host key is RSA is reached (rsa-sha2 signatures, as OpenSSH 8.8+ requires); a wrong RSA key is still refused', async () => {
    const port = BASE_PORT + 2;
    await onNode('kms-2', [
      "rm -f /etc/ssh/ssh_host_rsa_key /etc/ssh/ssh_host_rsa_key.pub",
      "ssh-keygen -q -t rsa -b 3072 -N '' -f /etc/ssh/ssh_host_rsa_key",
      "printf 'HostKey /etc/ssh/ssh_host_rsa_key\\n' > /etc/ssh/sshd_config.d/rsa-hostkey.conf",
      'systemctl restart ssh',
    ].join(' && '));
    try {
      const known = path.join(dir, 'known_hosts');
      const rsa = (await onNode('kms-2', 'cat /etc/ssh/ssh_host_rsa_key.pub')).split(' ').slice(0, 2).join(' ');
      expect(rsa).toMatch(/^ssh-rsa AAAA/);
      writeFileSync(known, `[127.0.0.1]:${port} ${rsa}\n`);
      const inv = writeInventory({ nodes: ['kms-2'], knownHosts: known });
      const r = await rollout(['plan', inv], NO_AGENT);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`=== kms-2 (root@127.0.0.1:${port})`);

      execFileSync('ssh-keygen', ['-q', '-t', 'rsa', '-b', '3072', '-N', '', '-f', path.join(dir, 'other_rsa')]);
      writeFileSync(known, `[127.0.0.1]:${port} ${readFileSync(path.join(dir, 'other_rsa.pub'), 'utf8').split(' ').slice(0, 2).join(' ')}\n`);
      const wrong = await rollout(['plan', inv, '--accept-new-host-keys'], NO_AGENT);
      expect(wrong.code).toBe(3);
      expect(wrong.stdout + wrong.stderr).toContain(`HOST KEY CHANGED for [127.0.0.1]:${port}: the server offers ssh-rsa`);
    } finally {
      await onNode('kms-2', 'rm -f /etc/ssh/sshd_config.d/rsa-hostkey.conf /etc/ssh/ssh_host_rsa_key /etc/ssh/ssh_host_rsa_key.pub && systemctl restart ssh');
    }
  });

  it('a host name in another case than known_hosts records it (hashed): the recorded key is found, so a changed key is refused even with --accept-new-host-keys', async () => {
    const known = path.join(dir, 'known_hosts');
    const key = (n: number) => readFileSync(KNOWN, 'utf8').split('\n').find((l) => l.startsWith(`[127.0.0.1]:${BASE_PORT + n} `))!.split(' ').slice(1).join(' ');
    const ssh = `  config: none\n  knownHosts: ${known}\n  identityFile: ${KEY}\n  port: ${BASE_PORT + 2}`;
    const inv = inventory(ssh, ['LocalHost']);
    // kms-3's key recorded (hashed) as kms-2's under the lower-case name ssh uses.
    writeFileSync(known, `[localhost]:${BASE_PORT + 2} ${key(3)}\n`);
    execFileSync('ssh-keygen', ['-H', '-f', known], { stdio: 'ignore' });
    const before = readFileSync(known, 'utf8');
    const changed = await rollout(['plan', inv, '--accept-new-host-keys'], NO_AGENT);
    expect(changed.code).toBe(3);
    expect(changed.stdout + changed.stderr).toContain(`HOST KEY CHANGED for [localhost]:${BASE_PORT + 2}`);
    expect(readFileSync(known, 'utf8')).toBe(before);

    writeFileSync(known, `[localhost]:${BASE_PORT + 2} ${key(2)}\n`);
    execFileSync('ssh-keygen', ['-H', '-f', known], { stdio: 'ignore' });
    const right = await rollout(['plan', inv], NO_AGENT);
    expect(right.stderr).toBe('');
    expect(right.code).toBe(0);
  });
});
