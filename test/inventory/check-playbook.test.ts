// `rollout check PLAYBOOK`: a playbook alone, offline, every problem with its
// line; and the vars an inventory hands a playbook of its own.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { checkPlaybookOffline, looksLikePlaybook, renderFindings } from '../../src/inventory/check.js';
import { loadInventory } from '../../src/inventory/load.js';
import { resolveVars } from '../../src/inventory/secrets.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/playbook-check/', import.meta.url));
const PLAYBOOKS = fileURLToPath(new URL('../../playbooks/', import.meta.url));
const fixture = (name: string) => path.join(FIXTURES, `${name}.yaml`);

// The built CLI, as an operator runs it (npm test builds first).
const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
function cli(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH! } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('checkPlaybookOffline', () => {
  it.each(['greeter-settings', 'minkms-vault-hsm'])('the shipped %s playbook has no finding', async (name) => {
    const { findings, playbook } = await checkPlaybookOffline(path.join(PLAYBOOKS, `${name}.yaml`));
    expect(findings).toEqual([]);
    expect(playbook?.name).toBe(name);
  });

  it('reports every schema problem at once, each with its line and key path', async () => {
    const file = fixture('schema-problems');
    const { findings, playbook } = await checkPlaybookOffline(file);
    expect(playbook).toBeNull();
    const lines = renderFindings(findings).split('\n');
    expect(lines).toEqual([
      `${file}:5: files.config.path: Invalid string: must start with "/"`,
      `${file}:8: gate.ready: Invalid input: expected string, received undefined`,
      `${file}:14: phases[0].tasks[1].value: must be a string (quote numbers: "4") or { var: NAME }`,
      expect.stringMatching(new RegExp(`^${file}:15: phases\\[0\\]\\.tasks\\[2\\]\\.kind: .*'env\\.set'`)),
      `${file}:16: phases[0].tasks[3].unti: unknown key; check its spelling against the documented format`,
    ]);
  });

  it('reports references the schema cannot see: unknown files, bad regexes, with their lines', async () => {
    const file = fixture('bad-references');
    const { findings, playbook } = await checkPlaybookOffline(file);
    expect(playbook).toBeNull();
    expect(findings.map((f) => [f.level, f.line, f.key])).toEqual([
      ['error', 8, 'files.config.fromEnv.file'],
      ['error', 21, 'phases[0].tasks[0].file'],
      ['error', 15, 'gate.failOn[1]'],
      ['error', 17, 'secrets.logPatterns[0]'],
    ]);
    expect(findings[1]!.message).toBe('no file named "conf" in `files`');
    expect(findings[2]!.message).toContain('not a valid regular expression');
  });

  it('warns of a phase that changes files without a restart, and of one that restarts without changing a file', async () => {
    const file = fixture('restart-warnings');
    const { findings, playbook } = await checkPlaybookOffline(file);
    expect(playbook?.name).toBe('warnings');
    expect(findings.map((f) => [f.level, f.line, f.key])).toEqual([['warn', 11, 'phases[0]'], ['warn', 14, 'phases[1]']]);
    expect(findings[0]!.message).toContain('no-restart changes files but has no service.restart');
    expect(findings[1]!.message).toContain('restart-only has a service.restart but changes no file');
  });

  it('an unreadable playbook is one finding', async () => {
    const { findings } = await checkPlaybookOffline(fixture('no-such-playbook'));
    expect(findings).toEqual([expect.objectContaining({ level: 'error', message: 'cannot read the playbook: ENOENT' })]);
  });
});

describe('looksLikePlaybook', () => {
  it.each([
    ['a playbook', 'version: v1\nphases: []\n', true],
    ['an inventory', 'version: v1\nnodes: []\nvars: {}\n', false],
    ['an inventory with phases by mistake', 'nodes: []\nphases: []\n', false],
    ['a list', '- phases\n', false],
    ['not YAML', 'a: [\n', false],
    ['empty', '', false],
  ])('%s', (_name, text, expected) => {
    expect(looksLikePlaybook(text)).toBe(expected);
  });
});

describe('rollout check PLAYBOOK (the CLI)', () => {
  it('exit 0 and a summary for a valid playbook, 2 with every problem for a broken one; warnings alone pass', () => {
    const good = cli(['check', path.join(PLAYBOOKS, 'greeter-settings.yaml')]);
    expect(good.code).toBe(0);
    expect(good.stdout).toContain('greeter-settings.yaml: valid playbook "greeter-settings": phases greeting; files: config, env; unit greeter; vars it uses: greeting.');
    const bad = cli(['check', fixture('bad-references')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`${fixture('bad-references')}:21: phases[0].tasks[0].file: no file named "conf" in \`files\``);
    expect(bad.stderr).toContain('4 problem(s)');
    const warned = cli(['check', fixture('restart-warnings')]);
    expect(warned.code).toBe(0);
    expect(warned.stdout).toContain(':11: warning: phases[0]: no-restart changes files');
    const help = cli(['check', '--help']);
    expect(help.stdout).toContain('rollout check INVENTORY|PLAYBOOK');
  });
});

describe('vars of a playbook of its own', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'rollout-pbvars-'));
  const inventory = (vars: string) => {
    const file = path.join(dir, 'greeter.yaml');
    writeFileSync(file, `version: v1\nplaybook: ${path.join(PLAYBOOKS, 'greeter-settings.yaml')}\nnodes:\n  - { name: n1, host: 10.0.0.1 }\nvars:\n${vars}`);
    return file;
  };

  it('reach the playbook as written, with no vars.vault needed', async () => {
    const inv = await loadInventory(inventory('  greeting: Hello from rollout\n'));
    const vars = await resolveVars(inv.vars, inv.file);
    expect(vars.values).toEqual({ greeting: 'Hello from rollout', disableLocalHsm: false });
    expect(vars.secrets).toEqual([]);
  });

  it('a var the playbook does not use is an unknown key, with its line and the vars it does use', async () => {
    const file = inventory('  greeting: Hello\n  greetng: Hi\n');
    const err = await loadInventory(file).catch((e: Error) => e);
    expect(String(err)).toContain(`${file}:\n  - line 7: vars.greetng: unknown key; the playbook greeter-settings.yaml uses no var "greetng" (its vars: greeting)`);
  });

  it('the shipped playbook without vars.vault: the var is missing, said by rollout check', async () => {
    const file = path.join(dir, 'minkms.yaml');
    writeFileSync(file, 'version: v1\nnodes:\n  - { name: n1, host: 10.0.0.1 }\nvars:\n  disableLocalHsm: false\n');
    const r = cli(['check', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('phases[0].tasks[0].value: var "vault" is not defined by the inventory');
  });
});
