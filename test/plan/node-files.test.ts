// How planning finds, reads and judges a node's files: odd config paths, a
// symlinked config, a secret going into a file others can read. The reads run
// the real read script on temp files (LocalTransport) where the node matters.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { computePhases, planNode, secretFileMode } from '../../src/plan/build.js';
import type { FileReader } from '../../src/plan/types.js';
import { normalizeNodePath, workingDirectoryOf } from '../../src/plan/node-path.js';
import { renderPlan } from '../../src/plan/render.js';
import type { FileChange, Plan } from '../../src/plan/types.js';
import { batchedReader, nodeReader } from '../../src/agent/files.js';
import { createRedactor } from '../../src/util/redact.js';
import { sha256 } from '../../src/util/sha256.js';
import { LocalTransport } from '../helpers/local-transport.js';
import { CONFIG, ENV, SECRET, node, shippedPlaybook, vars } from '../helpers/plan-inputs.js';

let dir: string;
beforeEach(() => {
  dir = realpathSync(mkdtempSync(path.join(tmpdir(), 'rollout-plan-files-')));
});

const envWith = (opts: string) => ENV.replace('--host kms-1:7373 --config /etc/minkms/config.yaml', opts);

/** A node whose env file lives in the temp dir (nodes[].envFile), read by the real read script. */
function localNode(env: string) {
  const envFile = path.join(dir, 'minkms.env');
  writeFileSync(envFile, env);
  return { node: { ...node, envFile }, t: new LocalTransport() };
}

/** An in-memory node: path -> [content, mode]. */
function readerWithModes(files: Record<string, [string, number]>): FileReader {
  return async (p) => {
    const f = files[p];
    if (!f) return null;
    const content = Buffer.from(f[0]);
    return { path: p, content, sha256: sha256(content), uid: 0, gid: 0, mode: f[1] };
  };
}

describe('odd config paths', () => {
  it('refuses a device named by --config, saying where the path came from', async () => {
    const { node: n, t } = localNode(envWith('--config /dev/null'));
    await expect(computePhases(batchedReader(t), n, await shippedPlaybook(), vars())).rejects.toThrow(
      `/dev/null is a character device, not a regular file; rollout reads and writes regular files only (path from --config in MINIO_KMS_OPTS of ${n.envFile}); set nodes[].configFile in the inventory to the file's absolute path`,
    );
  });

  it('refuses a FIFO named by --config without hanging on it', async () => {
    const fifo = path.join(dir, 'config.yaml');
    execFileSync('mkfifo', [fifo]);
    const { node: n, t } = localNode(envWith(`--config ${fifo}`));
    await expect(computePhases(batchedReader(t), n, await shippedPlaybook(), vars())).rejects.toThrow(`${fifo} is a FIFO, not a regular file`);
  }, 5000);

  it.each([
    ['a ".." component', '/etc/minkms/../../var/backups/rollout/x.yaml', 'has a ".." component'],
    ['a relative ".."', '../etc/passwd', 'has a ".." component'],
  ])('refuses %s in --config', async (_name, config, problem) => {
    const files = { '/etc/default/minkms': envWith(`--config ${config}`) };
    await expect(computePhases(readerWithModes(Object.fromEntries(Object.entries(files).map(([k, v]) => [k, [v, 0o600]]))), node, await shippedPlaybook(), vars(), { workingDirectory: async () => '/usr/local' }))
      .rejects.toThrow(`"${config}" (path from --config in MINIO_KMS_OPTS of /etc/default/minkms) ${problem}`);
  });

  it('normalises the path it plans (so the backup lands where the file is)', async () => {
    const files = { '/etc/default/minkms': [envWith('--config //etc/./minkms//config.yaml/'), 0o600], '/etc/minkms/config.yaml': [CONFIG, 0o640] } as Record<string, [string, number]>;
    const phases = await computePhases(readerWithModes(files), node, await shippedPlaybook(), vars());
    expect(phases[0]!.changes[0]!.path).toBe('/etc/minkms/config.yaml');
  });

  it('resolves a relative --config against the unit\'s WorkingDirectory and says so in the plan', async () => {
    const files = { '/etc/default/minkms': [envWith('--config config.yaml'), 0o600], '/usr/local/config.yaml': [CONFIG, 0o640] } as Record<string, [string, number]>;
    const asked: string[] = [];
    const phases = await computePhases(readerWithModes(files), node, await shippedPlaybook(), vars(), { workingDirectory: async (unit) => (asked.push(unit), '/usr/local\n') });
    expect(asked).toEqual(['minkms']);
    const change = phases[0]!.changes[0]!;
    expect(change.path).toBe('/usr/local/config.yaml');
    expect(change.pathFrom).toBe('config.yaml (--config in MINIO_KMS_OPTS of /etc/default/minkms, relative to minkms\'s WorkingDirectory /usr/local)');
    const text = renderPlan({ playbookName: 'p', phases: [], nodes: [{ node, status: 'ready', phases }] }, (s) => s);
    expect(text).toContain('--- phase vault-hsm: /usr/local/config.yaml\n  path: config.yaml (--config in MINIO_KMS_OPTS of /etc/default/minkms, relative to minkms\'s WorkingDirectory /usr/local)\n');
  });

  it('an unset WorkingDirectory is /, as systemd has it for a system unit', async () => {
    const files = { '/etc/default/minkms': [envWith('--config etc/minkms/config.yaml'), 0o600], '/etc/minkms/config.yaml': [CONFIG, 0o640] } as Record<string, [string, number]>;
    const phases = await computePhases(readerWithModes(files), node, await shippedPlaybook(), vars(), { workingDirectory: async () => '\n' });
    expect(phases[0]!.changes[0]!.path).toBe('/etc/minkms/config.yaml');
    expect(phases[0]!.changes[0]!.pathFrom).toContain('relative to minkms\'s WorkingDirectory / (unset: systemd\'s default)');
  });

  it('refuses a relative --config it cannot resolve', async () => {
    const files = { '/etc/default/minkms': [envWith('--config config.yaml'), 0o600] } as Record<string, [string, number]>;
    const playbook = await shippedPlaybook();
    await expect(computePhases(readerWithModes(files), node, playbook, vars(), { workingDirectory: async () => '~\n' }))
      .rejects.toThrow('"config.yaml" (path from --config in MINIO_KMS_OPTS of /etc/default/minkms) is relative, and minkms\'s WorkingDirectory is ~ (the home of its User=), which rollout does not resolve; set nodes[].configFile');
    await expect(computePhases(readerWithModes(files), node, playbook, vars())).rejects.toThrow('is relative and minkms\'s WorkingDirectory cannot be asked here');
  });

  it('follows the last of two --config options, as the service does', async () => {
    const files = { '/etc/default/minkms': [envWith('--config /etc/minkms/old.yaml --host kms-1:7373 --config=/etc/minkms/config.yaml'), 0o600], '/etc/minkms/config.yaml': [CONFIG, 0o640], '/etc/minkms/old.yaml': [CONFIG, 0o640] } as Record<string, [string, number]>;
    const phases = await computePhases(readerWithModes(files), node, await shippedPlaybook(), vars());
    expect(phases[0]!.changes.map((c) => c.path)).toEqual(['/etc/minkms/config.yaml']);
  });

  it('asks the node nothing more for an absolute path: one command; a relative one asks its WorkingDirectory', async () => {
    const config = path.join(dir, 'config.yaml');
    writeFileSync(config, CONFIG, { mode: 0o640 });
    const absolute = localNode(envWith(`--config ${config}`));
    const plan = await planNode({ node: absolute.node, reader: nodeReader(absolute.t) }, await shippedPlaybook(), vars());
    expect(plan.status).toBe('ready');
    // The env file is read first (the config path is in it), then the config it names.
    expect(absolute.t.commands.filter((c) => c.includes('systemctl'))).toEqual([]);

    // A stand-in systemctl answers for the unit (the only command it is asked).
    const bin = path.join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(path.join(bin, 'systemctl'), `#!/bin/sh\n[ "$*" = "show -p WorkingDirectory --value -- minkms" ] && echo ${dir}\n`);
    chmodSync(path.join(bin, 'systemctl'), 0o755);
    const relative = localNode(envWith('--config config.yaml'));
    const t = new LocalTransport({ ...process.env, PATH: `${bin}:${process.env.PATH}` });
    const planned = await planNode({ node: relative.node, reader: nodeReader(t) }, await shippedPlaybook(), vars());
    expect(planned).toMatchObject({ status: 'ready' });
    const change = planned.status === 'ready' ? planned.phases[0]!.changes[0]! : null;
    expect(change?.path).toBe(config);
    expect(change?.pathFrom).toContain(`relative to minkms's WorkingDirectory ${dir}`);
    expect(t.commands.filter((c) => c.includes('systemctl show -p WorkingDirectory'))).toHaveLength(1);
  });
});

describe('a symlinked config', () => {
  it('plans the change on the link\'s target, keeping the link; the plan says LINK -> TARGET', async () => {
    mkdirSync(path.join(dir, 'real'));
    const target = path.join(dir, 'real', 'config.yaml');
    writeFileSync(target, CONFIG, { mode: 0o640 });
    const link = path.join(dir, 'config.yaml');
    symlinkSync(target, link);
    const { node: n, t } = localNode(envWith(`--config ${link}`));
    const phases = await computePhases(batchedReader(t), n, await shippedPlaybook(), vars());
    const change = phases[0]!.changes[0]!;
    expect(change).toMatchObject({ path: target, linkPath: link, before: CONFIG });
    expect(change.dirs!.map((d) => d.path).slice(0, 2)).toEqual([path.join(dir, 'real'), dir]);
    const text = renderPlan({ playbookName: 'p', phases: [], nodes: [{ node: n, status: 'ready', phases }] }, (s) => s);
    expect(text).toContain(`--- phase vault-hsm: ${link} -> ${target}\n`);
    expect(text).toContain(`\n--- a${target}\t`);
    // The temp dir's parent (/tmp) lets every user plant names: the plan warns already.
    expect(text).toMatch(/\n {2}! \/tmp \(owner 0:0, mode 1777\): every user can write in it, .* \(preflight refuses this node until then\)\n/);
  });
});

describe('a secret going into a file others can read', () => {
  const files = (mode: number) => ({ '/etc/default/minkms': [ENV, 0o600], '/etc/minkms/config.yaml': [CONFIG, mode] }) as Record<string, [string, number]>;

  it('refuses by default, saying what to do', async () => {
    await expect(computePhases(readerWithModes(files(0o644)), node, await shippedPlaybook(), vars())).rejects.toThrow(
      '/etc/minkms/config.yaml is mode 0644, readable by every local user, and its new content holds a secret from the inventory; make it unreadable to others first (`chmod o-rwx /etc/minkms/config.yaml` on the node), or set secretFiles.othersReadable in the inventory: tighten (rollout writes it mode 0640) or allow (it stays 0644)',
    );
  });

  it('tighten: the planned mode drops the others\' bits, and the plan says so', async () => {
    const n = { ...node, secretFiles: { othersReadable: 'tighten' as const } };
    const phases = await computePhases(readerWithModes(files(0o644)), n, await shippedPlaybook(), vars());
    const change = phases[0]!.changes[0]!;
    expect(change).toMatchObject({ mode: 0o640, othersReadable: { policy: 'tighten', modeBefore: 0o644 } });
    const plan: Plan = { playbookName: 'p', phases: [], nodes: [{ node: n, status: 'ready', phases }] };
    const text = renderPlan(plan, createRedactor({ secrets: [SECRET], yamlKeys: ['secret'], envKeys: [], logPatterns: [] }));
    expect(text).toContain('--- phase vault-hsm: /etc/minkms/config.yaml\n  mode 0644 -> 0640 (secretFiles.othersReadable: tighten)\n');
    expect(text).not.toContain(SECRET);
  });

  it('allow: the mode stays, and the plan warns', async () => {
    const n = { ...node, secretFiles: { othersReadable: 'allow' as const } };
    const phases = await computePhases(readerWithModes(files(0o604)), n, await shippedPlaybook(), vars());
    expect(phases[0]!.changes[0]).toMatchObject({ mode: 0o604, othersReadable: { policy: 'allow', modeBefore: 0o604 } });
    const text = renderPlan({ playbookName: 'p', phases: [], nodes: [{ node: n, status: 'ready', phases }] }, (s) => s);
    expect(text).toContain('  ! mode 0604 kept: every local user can read the secret this file will hold (secretFiles.othersReadable: allow)\n');
  });

  it.each([
    ['0640: others cannot read', 0o640, 'refuse', 0o640],
    ['0666 tightened to 0660', 0o666, 'tighten', 0o660],
    ['0755 tightened to 0750', 0o755, 'tighten', 0o750],
    ['0602: others cannot read, only write', 0o602, 'refuse', 0o602],
  ] as const)('%s', (_name, mode, policy, planned) => {
    const c: FileChange = { kind: 'file', file: 'config', path: '/c', before: '', after: `secret: ${SECRET}\n`, beforeSha256: '', afterSha256: '', uid: 0, gid: 0, mode };
    expect(secretFileMode(c, [SECRET], policy)).toMatchObject({ mode: planned });
  });

  it('a file whose new content holds no secret keeps its mode whatever it is', () => {
    const c: FileChange = { kind: 'file', file: 'env', path: '/e', before: 'A=1\n', after: '', beforeSha256: '', afterSha256: '', uid: 0, gid: 0, mode: 0o644 };
    expect(secretFileMode(c, [SECRET], 'refuse')).toBe(c);
  });
});

describe('node paths', () => {
  it.each([
    ['/etc//minkms/./config.yaml/', { ok: true, path: '/etc/minkms/config.yaml' }],
    ['/etc/minkms/../passwd', { ok: false }],
    ['etc/minkms', { ok: false, problem: 'is not an absolute path' }],
    ['/etc/min\nkms', { ok: false }],
  ])('%j', (p, expected) => {
    expect(normalizeNodePath(p)).toMatchObject(expected);
  });

  it.each([
    ['', '/'],
    ['/usr/local\n', '/usr/local'],
    ['!/srv/kms\n', '/srv/kms'],
  ])('WorkingDirectory %j is %s', (shown, wd) => {
    expect(workingDirectoryOf(shown)).toEqual({ ok: true, path: wd });
  });

  it('WorkingDirectory ~ or a relative one is not resolved', () => {
    expect(workingDirectoryOf('~\n')).toMatchObject({ ok: false });
    expect(workingDirectoryOf('srv\n')).toMatchObject({ ok: false });
  });
});
