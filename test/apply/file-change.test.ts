import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { moveIntoPlace, restoreAll, stageChanges, stepFile, type Stager } from '../../src/apply/file-change.js';
import type { FileChange } from '../../src/plan/types.js';
import { stageFiles } from '../../src/agent/files.js';
import { sha256 } from '../../src/util/sha256.js';
import { LocalTransport } from '../helpers/local-transport.js';

// The file-change executor with the real node scripts under sh, on files in a temp dir.
// Backups go under the temp dir too (on a node: /var/backups/rollout/RUN/...).
const OLD = 'version: v1\n# keep me\n';
const NEW = `${OLD}hsm:\n  vault: {}\n`;
const RUN = '20261202T000000Z-abcdef';
const KEY = 'k3y';
let dir: string;
let t: LocalTransport;
let stage: Stager;

function change(file: string, mode = 0o640): FileChange {
  return { kind: 'file', file: 'config', path: file, before: OLD, after: NEW, beforeSha256: sha256(OLD), afterSha256: sha256(NEW), uid: process.getuid!(), gid: process.getgid!(), mode };
}
const backupIn = (backup: string) => path.join(dir, 'backups', backup);
const recorded = (c: FileChange) => ({ ...stepFile(RUN, c), backup: backupIn(stepFile(RUN, c).backup) });

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rollout-file-change-'));
  t = new LocalTransport();
  stage = (items) => stageFiles(t, items.map((i) => ({ ...i, backup: backupIn(i.backup) })));
});

describe('the file-change executor', () => {
  it('stages a backup and the new content beside the file, untouched; the move puts it in place with the planned mode', async () => {
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, OLD);
    chmodSync(file, 0o644);
    const c = change(file, 0o640);
    expect(await stageChanges(t, [c], RUN, KEY, stage)).toEqual([]);
    expect(readFileSync(file, 'utf8')).toBe(OLD);
    expect(readFileSync(recorded(c).backup, 'utf8')).toBe(OLD);
    expect(readdirSync(dir).sort()).toEqual(['.rollout-staged.k3y.config.yaml', 'backups', 'config.yaml']);

    expect(await moveIntoPlace(t, [c], KEY)).toBe('committed');
    expect(readFileSync(file, 'utf8')).toBe(NEW);
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect(readdirSync(dir).sort()).toEqual(['backups', 'config.yaml']);
  });

  it('a file edited after the plan is found stale at staging: reported, nothing staged for it', async () => {
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, `${OLD}edited: by hand\n`);
    const c = change(file);
    expect(await stageChanges(t, [c], RUN, KEY, stage)).toEqual([c]);
    expect(readdirSync(dir).sort()).toEqual(['backups', 'config.yaml']);
  });

  it('a file edited between staging and the move: stale, and the edit stays', async () => {
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, OLD);
    const c = change(file);
    await stageChanges(t, [c], RUN, KEY, stage);
    writeFileSync(file, `${OLD}edited: by hand\n`);
    expect(await moveIntoPlace(t, [c], KEY)).toBe('stale');
    expect(readFileSync(file, 'utf8')).toBe(`${OLD}edited: by hand\n`);
  });

  it('a staged copy that no longer holds the planned content is refused at the move: the file stays old', async () => {
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, OLD);
    const c = change(file);
    await stageChanges(t, [c], RUN, KEY, stage);
    writeFileSync(path.join(dir, '.rollout-staged.k3y.config.yaml'), 'tampered\n');
    await expect(moveIntoPlace(t, [c], KEY)).rejects.toThrow(/the staged copy of .* is not the planned content/);
    expect(readFileSync(file, 'utf8')).toBe(OLD);
  });

  it('restores what the run wrote from the backup, and never a file edited since', async () => {
    const a = path.join(dir, 'config.yaml');
    const b = path.join(dir, 'env');
    writeFileSync(a, OLD);
    writeFileSync(b, OLD);
    const changes = [change(a), change(b)];
    await stageChanges(t, changes, RUN, KEY, stage);
    expect(await moveIntoPlace(t, changes, KEY)).toBe('committed');
    writeFileSync(b, 'edited: by hand\n');
    const seen: string[] = [];
    expect(await restoreAll(t, changes.map(recorded), { progress: (text) => seen.push(text) })).toBe(false);
    expect(readFileSync(a, 'utf8')).toBe(OLD);
    expect(readFileSync(b, 'utf8')).toBe('edited: by hand\n');
    expect(seen).toEqual([`restoring ${b}`, `restoring ${a}`]);
    expect(existsSync(recorded(changes[1]!).backup)).toBe(true);
  });
});
