import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { limitNodes, loadInventory, resolveInventory, sshConfigLookup } from '../../src/inventory/load.js';
import { InventorySchema } from '../../src/inventory/schema.js';
import { resolveVars } from '../../src/inventory/secrets.js';

const dir = mkdtempSync(path.join(tmpdir(), 'rollout-inv-'));
function write(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

const VALID = `version: v1
ssh:
  user: root
  port: 22
  identityFile: keys/id_ed25519
  knownHosts: ~/.ssh/known_hosts
nodes:
  - host: kms-1.example.net
  - name: kms-2
    host: 10.0.0.12
    port: 2222
    user: ops
vars:
  vault:
    server: https://vault.example.net:8200
    approle:
      id: 4c1f
      secret: { env: ROLLOUT_TEST_SECRET }
    transit:
      key: aistor-key-manager-hsm
`;

describe('loadInventory', () => {
  it('resolves nodes with defaults, per-node overrides and paths relative to the inventory', async () => {
    const inv = await loadInventory(write('ok.yaml', VALID));
    expect(inv.nodes.map((n) => [n.name, n.host, n.port, n.user])).toEqual([
      ['kms-1.example.net', 'kms-1.example.net', 22, 'root'],
      ['kms-2', '10.0.0.12', 2222, 'ops'],
    ]);
    expect(inv.nodes[0]!.identityFile).toBe(path.join(dir, 'keys/id_ed25519'));
    expect(inv.playbookFile).toMatch(/playbooks\/minkms-vault-hsm\.yaml$/);
    expect(inv.vars.disableLocalHsm).toBe(false);
  });

  it.each([
    ['a misspelt key, with its line', VALID.replace('    transit:', '    transit:\n      kee: x'), /line 2\d: vars\.vault\.transit\.kee: unknown key/],
    ['both auth methods', VALID.replace('    transit:', '    kubernetes: { role: r, jwt: j }\n    transit:'), /vars\.vault: set exactly one authentication method: `approle` or `kubernetes` \(both are set\)/],
    ['no auth method', VALID.replace(/    approle:\n.*\n.*\n/, ''), /\(neither is set\)/],
    ['a duplicate node name', VALID.replace('name: kms-2', 'name: kms-1.example.net'), /nodes\[1\]: node name "kms-1.example.net" is already used by nodes\[0\]/],
    ['a bad port', VALID.replace('port: 2222', 'port: 0'), /line 1\d: nodes\[1\]\.port: /],
    ['YAML that does not parse', 'version: v1\nnodes: [\n', /line \d: /],
  ])('rejects %s', async (_name, text, message) => {
    await expect(loadInventory(write('bad.yaml', text))).rejects.toThrow(message);
  });
});

describe('~/.ssh/config', () => {
  const config = sshConfigLookup(`Host jump
  HostName 10.0.0.1
  User hop
  Port 2022
Host kms-*
  ProxyJump jump
  User deploy
Host kms-1
  HostName 10.0.1.1
  Port 2201
Host *
  IdentityFile ~/.ssh/id_lab
`);
  const raw = (ssh: Record<string, unknown>, node: Record<string, unknown> = {}) =>
    InventorySchema.parse({ version: 'v1', ssh, nodes: [{ host: 'kms-1', ...node }], vars: { vault: { server: 'https://v:8200', approle: { id: 'r', secret: 's' }, transit: { key: 'k' } } } });

  it('fills HostName, Port, User, IdentityFile and the jump host from the alias', () => {
    const [n] = resolveInventory(raw({}), '/inv/prod.yaml', config).nodes;
    expect(n).toMatchObject({ name: 'kms-1', host: '10.0.1.1', port: 2201, user: 'deploy', identityFile: expect.stringMatching(/\.ssh\/id_lab$/) });
    expect(n!.jump).toMatchObject({ spec: 'jump', host: '10.0.0.1', port: 2022, user: 'hop' });
  });

  it('the inventory wins over the config, the node over the inventory; a jump chain is refused', () => {
    const [n] = resolveInventory(raw({ user: 'ops', port: 22 }, { port: 2299, proxyJump: 'admin@10.9.9.9:2200' }), '/inv/prod.yaml', config).nodes;
    expect(n).toMatchObject({ host: '10.0.1.1', port: 2299, user: 'ops' });
    expect(n!.jump).toMatchObject({ host: '10.9.9.9', port: 2200, user: 'admin' });
    expect(() => resolveInventory(raw({ proxyJump: 'a,b' }), '/inv/prod.yaml', config)).toThrow(/ssh\.proxyJump: ProxyJump a,b is a chain; rollout goes through one jump host only/);
  });
});

describe('limitNodes (--limit)', () => {
  const GROUPED = VALID.replace('  - host: kms-1.example.net', '  - host: kms-1.example.net\n    groups: [eu, canary]').replace('    user: ops', '    user: ops\n    groups: [us]') + '';
  const three = () => loadInventory(write('grouped.yaml', GROUPED.replace('vars:', '  - { name: kms-3, host: 10.0.0.13, groups: [eu] }\nvars:')));

  it('selects by node name and by group, in inventory order, whatever the order given', async () => {
    const inv = await three();
    expect(limitNodes(inv, 'kms-3,kms-2').nodes.map((n) => n.name)).toEqual(['kms-2', 'kms-3']);
    expect(limitNodes(inv, 'eu').nodes.map((n) => n.name)).toEqual(['kms-1.example.net', 'kms-3']);
    expect(limitNodes(inv, 'canary, us').nodes.map((n) => n.name)).toEqual(['kms-1.example.net', 'kms-2']);
    expect(limitNodes(inv, undefined).nodes).toHaveLength(3);
  });

  it('an unknown name is an error listing the names there are, never an empty or full selection', async () => {
    const inv = await three();
    expect(() => limitNodes(inv, 'kms-2,kms-9')).toThrow(/--limit: no node or group named "kms-9" in .*grouped\.yaml \(nodes: kms-1\.example\.net, kms-2, kms-3; groups: eu, canary, us\)/);
    expect(() => limitNodes(inv, ' , ')).toThrow(/--limit needs node or group names/);
  });
});

describe('resolveVars', () => {
  it('names the inventory key when a secret env var is missing, never a value', async () => {
    const inv = await loadInventory(write('env.yaml', VALID));
    delete process.env.ROLLOUT_TEST_SECRET;
    await expect(resolveVars(inv.vars, inv.file)).rejects.toThrow(/vars\.vault\.approle\.secret: environment variable ROLLOUT_TEST_SECRET is not set/);
  });

  it('reads a secret from a file relative to the inventory, in the procedure order', async () => {
    write('secret.txt', 'from-file-secret\n');
    const inv = await loadInventory(write('file.yaml', VALID.replace('{ env: ROLLOUT_TEST_SECRET }', '{ file: secret.txt }').replace('transit:\n      key: aistor-key-manager-hsm', 'transit:\n      path: transit\n      key: aistor-key-manager-hsm')));
    const vars = await resolveVars(inv.vars, inv.file);
    expect(vars.secrets).toEqual(['from-file-secret']);
    expect(JSON.stringify(vars.values.vault)).toBe(
      '{"server":"https://vault.example.net:8200","approle":{"id":"4c1f","secret":"from-file-secret"},"transit":{"key":"aistor-key-manager-hsm","path":"transit"}}',
    );
  });

  it('names the key when a secret file cannot be read', async () => {
    const inv = await loadInventory(write('nofile.yaml', VALID.replace('{ env: ROLLOUT_TEST_SECRET }', '{ file: missing.txt }')));
    await expect(resolveVars(inv.vars, inv.file)).rejects.toThrow(/vars\.vault\.approle\.secret: cannot read secret file .*missing\.txt \(ENOENT\)/);
  });
});
