import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { starterInventory } from '../../src/cli/commands/init.js';
import { spawnSync } from 'node:child_process';
import { checkOffline, renderFindings } from '../../src/inventory/check.js';
import { loadInventory } from '../../src/inventory/load.js';
import { ed25519Key } from '../helpers/ssh-key.js';

// The built CLI, as an operator runs it (npm test builds first).
const CLI = path.join(import.meta.dirname, '../../dist/cli/main.js');
function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH!, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let dir: string;
const HOST_KEY = 'AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C7okWi0dh2l9GKJl';
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rollout-check-'));
});
afterEach(() => {
  delete process.env.ROLLOUT_TEST_SECRET;
});

function inventory(body: string): string {
  const file = path.join(dir, 'prod.yaml');
  writeFileSync(file, body);
  return file;
}

const VALID = (extra = '') => `version: v1
ssh:
  identityFile: ./id
  knownHosts: ./known_hosts
nodes:
  - { name: kms-1, host: kms-1.example.net }
  - { name: kms-2, host: 10.0.0.2, port: 2222 }
vars:
  vault:
    server: https://vault.example.net:8200
    approle:
      id: role-1
      secret: { env: ROLLOUT_TEST_SECRET }
    transit:
      key: minkms
${extra}`;

function material(): void {
  writeFileSync(path.join(dir, 'id'), ed25519Key());
  writeFileSync(path.join(dir, 'known_hosts'), `kms-1.example.net ssh-ed25519 ${HOST_KEY}\n[10.0.0.2]:2222 ssh-ed25519 ${HOST_KEY}\n`);
}

describe('rollout init', () => {
  it('writes a starter inventory that loads, nodes in the order given, ports kept', async () => {
    const file = inventory(starterInventory(['kms-1.example.net', '10.0.0.2:2222', '[fe80::1]:22']));
    const inv = await loadInventory(file);
    expect(inv.nodes.map((n) => [n.name, n.host, n.port])).toEqual([['kms-1', 'kms-1.example.net', 22], ['10', '10.0.0.2', 2222], ['fe80::1', 'fe80::1', 22]]);
    expect(inv.vars.vault?.approle?.secret).toEqual({ env: 'MINKMS_VAULT_SECRET_ID' });
  });

  it('check names every placeholder init left, with its line', async () => {
    const file = inventory(starterInventory(['kms-1']));
    process.env.ROLLOUT_TEST_SECRET = 'x';
    const { findings } = await checkOffline(file);
    const text = renderFindings(findings);
    expect(text).toMatch(/prod\.yaml:\d+: vars\.vault\.server: still the placeholder/);
    expect(text).toMatch(/prod\.yaml:\d+: vars\.vault\.approle\.id: still the placeholder/);
    expect(text).toMatch(/prod\.yaml:\d+: vars\.vault\.transit\.key: still the placeholder/);
  });

  it('prints to stdout from the CLI; no host at all is exit 2', () => {
    const r = cli(['init', 'kms-1', 'kms-2']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('  - { name: "kms-2", host: "kms-2" }');
    const none = cli(['init']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('rollout init kms-1 kms-2 kms-3 > inventories/prod.yaml');
  });
});

describe('rollout check (offline)', () => {
  it('a valid inventory passes with exit 0 and says nothing was contacted', async () => {
    material();
    process.env.ROLLOUT_TEST_SECRET = 's3cr3t-value';
    const { findings } = await checkOffline(inventory(VALID()));
    expect(findings).toEqual([]);
  });

  it('reports every problem at once with file, line and key path, and never a secret value', async () => {
    writeFileSync(path.join(dir, 'id'), ed25519Key({ passphrase: 'pw', cipher: 'aes256-cbc', rounds: 4 }));
    writeFileSync(path.join(dir, 'known_hosts'), `kms-1.example.net ssh-ed25519 ${HOST_KEY}\n`);
    const file = inventory(VALID('preflight:\n  vaultCaFile: ./missing-ca.pem\n'));
    const { findings } = await checkOffline(file);
    const text = renderFindings(findings);
    const lines = text.split('\n');
    expect(lines).toContainEqual(expect.stringMatching(/prod\.yaml:13: vars\.vault\.approle\.secret: environment variable ROLLOUT_TEST_SECRET is not set/));
    expect(lines).toContainEqual(expect.stringMatching(/prod\.yaml:3: warning: ssh\.identityFile: identity file .*\/id is passphrase-protected: rollout asks for the passphrase on a terminal; without one, load it into ssh-agent/));
    expect(lines).toContainEqual(expect.stringMatching(/prod\.yaml:7: nodes\[1\]: kms-2: no host key for \[10\.0\.0\.2\]:2222 in .*known_hosts/));
    expect(lines).toContainEqual(expect.stringMatching(/prod\.yaml:17: preflight\.vaultCaFile: .*missing-ca\.pem cannot be read \(ENOENT\)/));
    expect(findings.filter((f) => f.level === 'error')).toHaveLength(3);
  });

  it('schema problems come with their line and key, all of them', async () => {
    const file = inventory('version: v1\nnodes:\n  - { host: a, prot: 22 }\nvars:\n  vault:\n    server: vault\n    transit: { key: k }\n');
    const { findings } = await checkOffline(file);
    const text = renderFindings(findings);
    expect(text).toContain('prod.yaml:3: nodes[0].prot: unknown key');
    expect(text).toMatch(/prod\.yaml:6: vars\.vault\.server: must be a URL/);
    expect(text).toMatch(/vars\.vault: set exactly one authentication method/);
  });

  it('the CLI exits 2 on a problem and 0 when valid; --help shows the command with an example', () => {
    material();
    const file = inventory(VALID());
    const bad = cli(['check', file]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('ROLLOUT_TEST_SECRET is not set');
    const good = cli(['check', file], { ROLLOUT_TEST_SECRET: 'v' });
    expect(good.code).toBe(0);
    expect(good.stdout).toContain('valid. 2 node(s): kms-1, kms-2');
    const help = cli(['check', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Example: rollout check inventories/prod.yaml');
    expect(help.stdout).not.toContain('rollout apply INVENTORY');
  });
});
