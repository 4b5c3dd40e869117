// The stage, commit and restore verbs' refusals under /bin/sh, on files in a temp dir
// (their happy paths run through stageFiles/commitStaged/restoreFile in test/agent/remote-files.test.ts).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { commitRequest } from '../../src/rollout/journal.js';
import { stagedPath, stageRequest } from '../../src/agent/files.js';
import { sha256 } from '../../src/util/sha256.js';
import { runSh, verbScript } from './run-verb.js';

let dir: string;
const OLD = 'old\n';
const NEW = 'new\n';
const uid = process.getuid!();
const gid = process.getgid!();

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rollout-agent-files-'));
});

function item(file: string) {
  return { change: { path: file, after: NEW, beforeSha256: sha256(Buffer.from(OLD)), afterSha256: sha256(Buffer.from(NEW)), uid, gid, mode: 0o640 }, backup: path.join(dir, 'backups', 'run', 'f'), staged: stagedPath('k', file) };
}

describe('stage', () => {
  it('refuses a backup root that is a link, staging nothing', () => {
    const file = path.join(dir, 'f');
    writeFileSync(file, OLD);
    mkdirSync(path.join(dir, 'elsewhere'));
    symlinkSync(path.join(dir, 'elsewhere'), path.join(dir, 'backups'));
    const r = runSh(verbScript('stage', { BACKUP_ROOT: path.join(dir, 'backups') }), { name: 'rollout-stage', stdin: stageRequest([item(file)]) });
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^@error .*backups is not a directory of this user's own/);
    expect(readdirSync(dir).sort()).toEqual(['backups', 'elsewhere', 'f']);
  });

  it('refuses a request that ends early', () => {
    const r = runSh(verbScript('stage'), { name: 'rollout-stage', stdin: '1\n/etc/x\n' });
    expect(r).toMatchObject({ code: 1, out: '@error the staging request ended early\n' });
    expect(runSh(verbScript('stage'), { name: 'rollout-stage' }).out).toBe('@error no staging request\n');
  });
});

describe('commit', () => {
  const commit = (file: string) => ({ path: file, staged: stagedPath('k', file), beforeSha256: sha256(Buffer.from(OLD)), afterSha256: sha256(Buffer.from(NEW)), uid, gid, mode: 0o640 });

  it('moves nothing when any target is stale, even the ones before it', () => {
    const [a, b] = [path.join(dir, 'a'), path.join(dir, 'b')];
    writeFileSync(a, OLD);
    writeFileSync(b, 'edited by hand\n');
    for (const f of [a, b]) writeFileSync(stagedPath('k', f), NEW, { mode: 0o640 });
    const r = runSh(verbScript('commit'), { name: 'rollout-commit', stdin: commitRequest([commit(a), commit(b)]) });
    expect(r).toMatchObject({ code: 0, out: `@stale ${b}\n` });
    expect(readFileSync(a, 'utf8')).toBe(OLD);
  });

  it('refuses a missing staged copy with exit 1, and reports each file moved', () => {
    const a = path.join(dir, 'a');
    writeFileSync(a, OLD);
    expect(runSh(verbScript('commit'), { name: 'rollout-commit', stdin: commitRequest([commit(a)]) }))
      .toMatchObject({ code: 1, out: `@error the staged copy of ${a} is missing or not a regular file\n` });
    writeFileSync(stagedPath('k', a), NEW, { mode: 0o640 });
    expect(runSh(verbScript('commit'), { name: 'rollout-commit', stdin: commitRequest([commit(a)]) })).toMatchObject({ code: 0, out: `@file ${a}\n@committed\n` });
    expect(readFileSync(a, 'utf8')).toBe(NEW);
  });
});

describe('restore', () => {
  it('fails with the target untouched and nothing left beside it when the backup is missing', () => {
    const file = path.join(dir, 'f');
    writeFileSync(file, NEW);
    const r = runSh(verbScript('restore'), { name: 'rollout-restore', stdin: `${path.join(dir, 'no-backup')}\n${file}\n${sha256(Buffer.from(OLD))}\n-\n` });
    expect(r.code).toBe(1);
    expect(readFileSync(file, 'utf8')).toBe(NEW);
    expect(readdirSync(dir)).toEqual(['f']);
    expect(existsSync(path.join(dir, 'no-backup'))).toBe(false);
  });
});
