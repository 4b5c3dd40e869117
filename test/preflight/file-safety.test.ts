import { describe, expect, it } from 'vitest';
import { nonRootWriter, unsafeDirProblems } from '../../src/plan/unsafe-dirs.js';
import type { FileChange } from '../../src/plan/types.js';
import { fileSafetyChecks, parseNodeChecks } from '../../src/preflight/node-checks.js';
import type { DirStat } from '../../src/plan/types.js';
import { node } from '../helpers/plan-inputs.js';

const ROOT: DirStat[] = [
  { path: '/etc', uid: 0, gid: 0, mode: 0o755 },
  { path: '/', uid: 0, gid: 0, mode: 0o755 },
];
const change = (dirs: DirStat[] | undefined, extra: Partial<FileChange> = {}): FileChange => ({
  kind: 'file', file: 'config', path: '/etc/minkms/config.yaml', before: 'a\n', after: 'b\n', beforeSha256: 'x', afterSha256: 'y', uid: 0, gid: 997, mode: 0o640,
  ...(dirs ? { dirs } : {}), ...extra,
});
const minkmsDir = (uid: number, gid: number, mode: number): DirStat[] => [{ path: '/etc/minkms', uid, gid, mode }, ...ROOT];

describe('who besides root can write in a directory', () => {
  it.each([
    ['root 0755', 0, 0, 0o755, null],
    ['root:minkms 0750 (the install guide)', 0, 997, 0o750, null],
    ['root:root 0775 (group root)', 0, 0, 0o775, null],
    ['0777', 0, 997, 0o777, 'every user can write in it'],
    ['sticky 1777 (/tmp): others still plant new names', 0, 0, 0o1777, 'every user can write in it'],
    ['owned by ops', 1000, 997, 0o750, 'its owner, uid 1000, can write in it'],
    ['owned by ops, read-only to it: it can chmod', 1000, 1000, 0o555, 'its owner, uid 1000, can make it writable (chmod)'],
    ['group-writable, group minkms', 0, 997, 0o770, 'group 997 can write in it'],
  ])('%s', (_name, uid, gid, mode, why) => {
    expect(nonRootWriter({ path: '/etc/minkms', uid, gid, mode })).toBe(why);
  });

  it('names each directory once with its owner, mode and the fix, nearest first', () => {
    const dirs: DirStat[] = [{ path: '/srv/kms/real', uid: 1000, gid: 1000, mode: 0o755 }, { path: '/srv/kms', uid: 0, gid: 0, mode: 0o777 }, { path: '/srv', uid: 0, gid: 0, mode: 0o755 }, { path: '/', uid: 0, gid: 0, mode: 0o755 }];
    const problems = unsafeDirProblems([change(dirs, { path: '/srv/kms/real/config.yaml' }), change(dirs, { path: '/srv/kms/real/env' })]);
    expect(problems).toEqual([
      '/srv/kms/real (owner 1000:1000, mode 0755): its owner, uid 1000, can write in it, so a non-root user could plant a file or link where root writes /srv/kms/real/config.yaml; run `chown root: /srv/kms/real; chmod go-w /srv/kms/real` on the node',
      '/srv/kms (owner 0:0, mode 0777): every user can write in it, so a non-root user could plant a file or link where root writes /srv/kms/real/config.yaml; run `chown root: /srv/kms; chmod go-w /srv/kms` on the node',
    ]);
  });
});

describe('fileSafetyChecks', () => {
  it('passes when only root can write above every planned file', () => {
    expect(fileSafetyChecks('kms-1', [change(minkmsDir(0, 997, 0o750))])).toEqual([
      { scope: 'kms-1', name: 'directories', status: 'pass', detail: 'only root can write in the directories above the 1 planned file(s)' },
    ]);
  });

  it('fails on a writable config directory, and on directories the plan did not read', () => {
    const [dirs] = fileSafetyChecks('kms-1', [change(minkmsDir(0, 997, 0o777))]);
    expect(dirs).toMatchObject({ name: 'directories', status: 'fail', detail: expect.stringContaining('/etc/minkms (owner 0:997, mode 0777): every user can write in it') });
    expect(dirs!.detail).toContain('run `chown root: /etc/minkms; chmod go-w /etc/minkms` on the node');
    expect(fileSafetyChecks('kms-1', [change(undefined)])[0]).toMatchObject({ status: 'fail', detail: 'the owners of the directories above /etc/minkms/config.yaml were not read; run `rollout plan` again' });
  });

  it('reports what secretFiles did: a tightened mode passes, an allowed one warns', () => {
    const safe = minkmsDir(0, 997, 0o750);
    expect(fileSafetyChecks('kms-1', [change(safe, { mode: 0o640, othersReadable: { policy: 'tighten', modeBefore: 0o644 } })])[1])
      .toEqual({ scope: 'kms-1', name: 'secret files', status: 'pass', detail: '/etc/minkms/config.yaml mode 0644 -> 0640 (secretFiles.othersReadable: tighten)' });
    expect(fileSafetyChecks('kms-1', [change(safe, { mode: 0o644, othersReadable: { policy: 'allow', modeBefore: 0o644 } })])[1])
      .toMatchObject({ name: 'secret files', status: 'warn' });
  });

  it('is part of the node checks apply and preflight make', () => {
    const plan = { node, status: 'ready' as const, phases: [{ name: 'vault-hsm', description: '', unchanged: [], restart: { kind: 'restart' as const, unit: 'minkms' }, changes: [change(minkmsDir(1000, 997, 0o750))] }] };
    const out = '@checks-begin\n@uid 0\n@lock \n@dir 0 ok\n@journal ok\n@svc-begin\nActiveState=active\nSubState=running\n@svc-end\n@checks-end\n';
    const checks = parseNodeChecks('kms-1', out, plan, { dirs: ['/etc/minkms'], unit: 'minkms' }, null);
    expect(checks.find((c) => c.name === 'directories')).toMatchObject({ status: 'fail', detail: expect.stringContaining('/etc/minkms (owner 1000:997, mode 0750): its owner, uid 1000, can write in it') });
  });
});
