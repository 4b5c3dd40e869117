import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { starterInventory } from '../../src/cli/commands/init.js';
import { checkOffline, renderFindings } from '../../src/inventory/check.js';
import { loadInventory } from '../../src/inventory/load.js';

const dir = mkdtempSync(path.join(tmpdir(), 'rollout-inv-secret-files-'));
function write(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

const INVENTORY = (top = '', node = '') => `version: v1
nodes:
  - host: kms-1.example.net${node}
${top}vars:
  vault:
    server: https://vault.example.net:8200
    approle:
      id: 4c1f
      secret: literal-secret-for-tests
    transit:
      key: aistor-key-manager-hsm
`;

describe('secretFiles in the inventory', () => {
  it('defaults to refusing, and reaches every node', async () => {
    const inv = await loadInventory(write('default.yaml', INVENTORY()));
    expect(inv.secretFiles).toEqual({ othersReadable: 'refuse' });
    expect(inv.nodes[0]!.secretFiles).toEqual({ othersReadable: 'refuse' });
  });

  it.each(['tighten', 'allow'])('takes %s', async (policy) => {
    const inv = await loadInventory(write(`${policy}.yaml`, INVENTORY(`secretFiles:\n  othersReadable: ${policy}\n`)));
    expect(inv.nodes[0]!.secretFiles).toEqual({ othersReadable: policy });
  });

  it.each([
    ['a value it does not know, with its line', 'secretFiles:\n  othersReadable: loosen\n', /line 5: secretFiles\.othersReadable: /],
    ['a misspelt key, with its line', 'secretFiles:\n  otherReadable: tighten\n', /line 5: secretFiles\.otherReadable: unknown key/],
  ])('rejects %s', async (_name, top, message) => {
    await expect(loadInventory(write('bad.yaml', INVENTORY(top)))).rejects.toThrow(message);
  });

  it('check warns about allow, with its line', async () => {
    const { findings } = await checkOffline(write('allow.yaml', INVENTORY('secretFiles: { othersReadable: allow }\n')));
    expect(renderFindings(findings)).toMatch(/allow\.yaml:4: warning: secretFiles\.othersReadable: allow: a file others can read that gets a secret keeps it readable by every local user; prefer tighten/);
  });

  it('init shows the key, commented out, and its starter inventory still loads', async () => {
    const text = starterInventory(['kms-1']);
    expect(text).toContain('# secretFiles: { othersReadable: refuse }');
    expect((await loadInventory(write('init.yaml', text.replace('# secretFiles:', 'secretFiles:')))).secretFiles).toEqual({ othersReadable: 'refuse' });
  });
});

describe('node paths in the inventory', () => {
  it.each([
    ['a ".." component', '/etc/minkms/../../tmp/x.yaml', /line 4: nodes\[0\]\.configFile: a "\.\." component is not allowed: write the path without it/],
    ['a relative path', 'config.yaml', /line 4: nodes\[0\]\.configFile: must be an absolute path/],
    ['a newline', '"/etc/minkms/\\nconfig.yaml"', /line 4: nodes\[0\]\.configFile: a newline is not allowed in a path/],
  ])('refuses %s in configFile', async (_name, value, message) => {
    await expect(loadInventory(write('path.yaml', INVENTORY('', `\n    configFile: ${value}`)))).rejects.toThrow(message);
  });
});
