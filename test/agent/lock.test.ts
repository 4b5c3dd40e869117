// The lock and release verbs under /bin/sh, the lock file and backup root in a temp dir.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { runSh, verbScript } from './run-verb.js';

let dir: string;
let vars: Record<string, string>;
const lockFile = () => vars.LOCK_FILE!;
const mine = '{"runId":"run-a","user":"ops"}';

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rollout-agent-lock-'));
  vars = { RUN_DIR: path.join(dir, 'run'), LOCK_FILE: path.join(dir, 'run', 'lock.json'), BACKUP_ROOT: path.join(dir, 'backups') };
});

const take = (record: string) => runSh(verbScript('lock', vars), { name: 'rollout-lock', stdin: `${record}\n` });
const release = (lines: string[]) => runSh(verbScript('release', vars), { name: 'rollout-release', stdin: `${lines.join('\n')}\n` });

describe('lock (take)', () => {
  it('creates the lock with the record from stdin, in a directory only its owner reads', () => {
    expect(take(mine).out).toBe('@lock taken\n');
    expect(readFileSync(lockFile(), 'utf8')).toBe(`${mine}\n`);
    expect(readdirSync(dir)).toEqual(['run']);
  });

  it('refuses a held lock, naming its holder and leaving it as it was', () => {
    take(mine);
    expect(take('{"runId":"run-b"}').out).toBe(`@lock held ${mine}\n`);
    expect(readFileSync(lockFile(), 'utf8')).toBe(`${mine}\n`);
  });

  it('never writes through a link planted at the lock\'s name', () => {
    mkdirSync(vars.RUN_DIR!);
    const victim = path.join(dir, 'victim');
    symlinkSync(victim, lockFile());
    expect(take(mine).out).toMatch(/^@lock held/);
    expect(existsSync(victim)).toBe(false);
  });

  it('relock replaces whatever lock stands with the record from stdin', () => {
    take('{"runId":"run-b"}');
    expect(runSh(verbScript('relock', vars), { name: 'rollout-lock', stdin: mine }).code).toBe(0);
    expect(readFileSync(lockFile(), 'utf8')).toBe(mine);
    expect(existsSync(`${lockFile()}.new`)).toBe(false);
  });
});

describe('release', () => {
  it('removes the lock of its own run, with the paths given', () => {
    take(mine);
    const leftover = path.join(dir, 'staged copy');
    writeFileSync(leftover, 'x');
    expect(release(['run-a', '-', '1', leftover])).toMatchObject({ code: 0, out: '' });
    expect(existsSync(lockFile())).toBe(false);
    expect(existsSync(leftover)).toBe(false);
  });

  it('leaves another run\'s lock alone', () => {
    take(mine);
    expect(release(['run-b', '-', '0']).code).toBe(0);
    expect(readFileSync(lockFile(), 'utf8')).toBe(`${mine}\n`);
  });

  it('prunes all but the newest backup runs, naming each, and nothing else in the backup root', () => {
    const runs = ['20261101T000000Z-aaaaaa', '20261102T000000Z-bbbbbb', '20261103T000000Z-cccccc'];
    for (const r of [...runs, 'not-a-run']) mkdirSync(path.join(vars.BACKUP_ROOT!, r), { recursive: true });
    const r = release(['run-a', '1', '0']);
    expect(r.out).toBe(`@pruned ${path.join(vars.BACKUP_ROOT!, runs[0]!)}\n@pruned ${path.join(vars.BACKUP_ROOT!, runs[1]!)}\n`);
    expect(readdirSync(vars.BACKUP_ROOT!).sort()).toEqual([runs[2], 'not-a-run']);
    // `-`: no pruning at all.
    expect(release(['run-a', '-', '0']).out).toBe('');
    expect(readdirSync(vars.BACKUP_ROOT!)).toHaveLength(2);
  });
});
