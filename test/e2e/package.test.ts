// The package as a user gets it: `npm pack`, then `npm install -g
// --ignore-scripts` of the tarball (as the README says) into an empty prefix
// with an empty npm cache and home (only the npm registry to fetch from), then
// the installed `rollout` run as a user runs it:
// --version, check, and a plan against the lab. And on a Node.js too old for it,
// one line that says which versions it needs.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { LAB_SECRET, REPO, resetLab, writeInventory } from '../helpers/lab.js';

const run = promisify(execFile);
const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string>; devDependencies: Record<string, string> };

type Result = { code: number | null; stdout: string; stderr: string };

/** Runs `file` with `args`, this Node.js first on PATH and `env` over the test's own (its CA bundle reaches the registry); never throws. */
function exec(file: string, args: readonly string[], env: Record<string, string>, cwd = REPO): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { cwd, env: { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH}`, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('the npm package', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'rollout-pkg-'));
  const home = path.join(dir, 'home');
  const prefix = path.join(dir, 'prefix');
  const clean = { HOME: home, npm_config_cache: path.join(dir, 'npm-cache'), npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
  let files: string[] = [];
  let install: Result;

  beforeAll(async () => {
    await resetLab();
    // dist/ is what `npm test` just built; packing runs no build of its own.
    const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: REPO, env: { ...process.env, ...clean } });
    expect(packed.stderr).not.toMatch(/npm (warn|error)/i);
    const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    files = info!.files.map((f) => f.path);
    install = await exec('npm', ['install', '--global', '--ignore-scripts', '--prefix', prefix, path.join(dir, info!.filename)], clean);
  }, 300_000);

  it('holds dist/ (the agent scripts with it), the playbooks and the README; no source, tests, lab or bench', () => {
    expect(files).toEqual(expect.arrayContaining(['package.json', 'README.md', 'dist/cli/entry.js', 'dist/cli/main.js', 'dist/agent/state.sh', 'dist/agent/restart.sh', 'playbooks/minkms-vault-hsm.yaml', 'playbooks/README.md']));
    expect(files.filter((f) => /^(src|test|lab|bench|\.ci)\//.test(f))).toEqual([]);
  });

  it('installs with npm install -g from the tarball alone: no build, no native code, no dev dependency, no warning to act on', () => {
    expect(install.stderr).not.toMatch(/npm (warn|error)/i);
    expect(install.code).toBe(0);
    const installed = path.join(prefix, 'lib/node_modules/rollout');
    expect(existsSync(path.join(installed, 'dist/cli/entry.js'))).toBe(true);
    const deps = readdirSync(path.join(installed, 'node_modules'));
    for (const dep of Object.keys(pkg.dependencies)) expect(deps).toContain(dep);
    for (const dev of Object.keys(pkg.devDependencies)) expect(deps).not.toContain(dev.split('/')[0]);
    // ssh2 runs on Node's own crypto: its optional binding was not built.
    expect(existsSync(path.join(installed, 'node_modules/ssh2/lib/protocol/crypto/build'))).toBe(false);
  });

  it('the installed rollout runs --version, check and a plan against the lab', async () => {
    const rollout = path.join(prefix, 'bin/rollout');
    const env = { ...clean, ROLLOUT_E2E_SECRET: LAB_SECRET, CI: 'true' };
    const version = await exec(rollout, ['--version'], env);
    expect(version).toMatchObject({ code: 0, stderr: '' });
    expect(version.stdout.trim()).toBe(pkg.version);

    const inventory = writeInventory();
    const check = await exec(rollout, ['check', inventory], env);
    expect(check.stderr).toBe('');
    expect(check.code).toBe(0);

    const plan = await exec(rollout, ['plan', inventory], env);
    expect(plan.stderr).toBe('');
    expect(plan.code).toBe(0);
    for (const node of ['kms-1', 'kms-2', 'kms-3']) expect(plan.stdout).toContain(`=== ${node}`);
    expect(plan.stdout).toContain('+hsm:');
  });

  it('on Node.js 18: one line naming the supported versions, exit 2 (nothing contacted)', async () => {
    const node18 = (await run('bash', [path.join(REPO, 'test/node-bin.sh'), '18'])).stdout.trim();
    const r = await exec(node18, [path.join(prefix, 'lib/node_modules/rollout/dist/cli/entry.js'), 'plan', 'inventory.yaml'], clean);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^rollout: Node\.js 18\.\d+\.\d+ is too old; rollout needs Node\.js 20, 22 or 24 \(.*\)\n$/);
  }, 300_000);
});
