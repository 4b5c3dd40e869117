import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { commitStaged, type StagedCommit } from '../../src/rollout/journal.js';
import { batchedReader, readRemoteFiles, restoreFile, stagedPath, stageFiles } from '../../src/agent/files.js';
import { sha256 } from '../../src/util/sha256.js';
import { LocalTransport } from '../helpers/local-transport.js';

// The node-side scripts run here with the real sh and coreutils, on files in a temp dir.
let dir: string;
let t: LocalTransport;
const uid = process.getuid!();
const gid = process.getgid!();
const OLD = 'version: v1\n# keep me\n';
const NEW = `${OLD}hsm:\n  vault: {}\n`;

function change(file: string, mode = 0o640) {
  return { path: file, after: NEW, beforeSha256: sha256(Buffer.from(OLD)), afterSha256: sha256(Buffer.from(NEW)), uid, gid, mode };
}
function commitOf(file: string, runId: string, mode = 0o640): StagedCommit {
  const c = change(file, mode);
  return { path: file, staged: stagedPath(runId, file), beforeSha256: c.beforeSha256, afterSha256: c.afterSha256, uid, gid, mode };
}

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rollout-files-'));
  t = new LocalTransport();
});

describe('readRemoteFiles', () => {
  it('reads several files with owner and mode in one command, null for a missing one', async () => {
    writeFileSync(path.join(dir, 'a'), 'alpha\n');
    writeFileSync(path.join(dir, 'b c'), Buffer.from([0, 1, 2, 10, 255]));
    chmodSync(path.join(dir, 'b c'), 0o600);
    const files = await readRemoteFiles(t, [path.join(dir, 'a'), path.join(dir, 'missing'), path.join(dir, 'b c')]);
    expect(t.commands).toHaveLength(1);
    expect(files.get(path.join(dir, 'a'))?.content.toString()).toBe('alpha\n');
    expect(files.get(path.join(dir, 'missing'))).toBeNull();
    const bc = files.get(path.join(dir, 'b c'))!;
    expect([...bc.content]).toEqual([0, 1, 2, 10, 255]);
    expect(bc).toMatchObject({ mode: 0o600, uid, gid, sha256: sha256(Buffer.from([0, 1, 2, 10, 255])) });
  });

  it('batchedReader sends the paths asked for in one tick as one command', async () => {
    writeFileSync(path.join(dir, 'a'), 'A');
    writeFileSync(path.join(dir, 'b'), 'B');
    const read = batchedReader(t);
    const [a, b, again] = await Promise.all([read(path.join(dir, 'a')), read(path.join(dir, 'b')), read(path.join(dir, 'a'))]);
    expect([a?.content.toString(), b?.content.toString(), again?.content.toString()]).toEqual(['A', 'B', 'A']);
    expect(t.commands).toHaveLength(1);
  });
});

describe('stageFiles and commitStaged', () => {
  const runId = '20261126T000000Z-abcdef';

  it('removes a link planted at the staged copy\'s name, never following it: the staged copy is a new regular file', async () => {
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, OLD);
    const victim = path.join(dir, 'profile.sh');
    writeFileSync(victim, 'echo hi\n');
    const planted = path.join(dir, 'not-yet.sh');
    // A dangling link (root would create its target) and a link to an existing file.
    for (const target of [planted, victim]) {
      rmSync(stagedPath(runId, file), { force: true });
      symlinkSync(target, stagedPath(runId, file));
      const backup = path.join(dir, 'backups', runId, 'config.yaml');
      expect(await stageFiles(t, [{ change: change(file), backup, staged: stagedPath(runId, file) }])).toEqual(['staged']);
      expect(lstatSync(stagedPath(runId, file)).isSymbolicLink()).toBe(false);
      expect(readFileSync(stagedPath(runId, file), 'utf8')).toBe(NEW);
      expect(existsSync(planted)).toBe(false);
      expect(readFileSync(victim, 'utf8')).toBe('echo hi\n');
      expect(readFileSync(file, 'utf8')).toBe(OLD);
    }
  });

  it('creates the staged copy exclusively: something standing at its name when it is created fails staging', async () => {
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, OLD);
    const planted = path.join(dir, 'planted-target');
    // dd's exclusive create is what is tested here: a name the leftover sweep does not remove.
    const staged = path.join(dir, 'staged-name');
    symlinkSync(planted, staged);
    await expect(stageFiles(t, [{ change: change(file), backup: path.join(dir, 'backups', 'config.yaml'), staged }]))
      .rejects.toThrow(/cannot create the staged copy of .*config\.yaml \(something already stands at its name\)/);
    expect(existsSync(planted)).toBe(false);
    expect(readFileSync(file, 'utf8')).toBe(OLD);
  });

  it('sends the request on stdin: the command line names no path, backup or staged copy', async () => {
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, OLD);
    const backup = path.join(dir, 'backups', runId, 'config.yaml');
    expect(await stageFiles(t, [{ change: change(file), backup, staged: stagedPath('k3y', file) }])).toEqual(['staged']);
    expect(t.commands).toHaveLength(1);
    for (const secretish of [runId, 'k3y', dir]) expect(t.commands[0]).not.toContain(secretish);
    expect(await commitStaged(t, [commitOf(file, 'k3y')])).toBe('committed');
    for (const secretish of [runId, 'k3y', dir]) expect(t.commands[1]).not.toContain(secretish);
    expect(readFileSync(file, 'utf8')).toBe(NEW);
  });

  it('refuses to move a staged copy that is a link, even one to the planned content', async () => {
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, OLD);
    const elsewhere = path.join(dir, 'elsewhere');
    writeFileSync(elsewhere, NEW);
    chmodSync(elsewhere, 0o640);
    symlinkSync(elsewhere, stagedPath(runId, file));
    await expect(commitStaged(t, [commitOf(file, runId)])).rejects.toThrow(/staged copy of .*config\.yaml is missing or not a regular file/);
    expect(readFileSync(file, 'utf8')).toBe(OLD);
    expect(lstatSync(file).isSymbolicLink()).toBe(false);
  });

  it('stages beside the file and backs it up, leaving the file itself untouched; the commit moves it into place', async () => {
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, OLD);
    chmodSync(file, 0o640);
    const before = statSync(file);
    // A staged copy left by an older run is removed.
    writeFileSync(stagedPath('20250101T000000Z-000000', file), 'stale leftover');
    const backup = path.join(dir, 'backups', runId, 'config.yaml');

    expect(await stageFiles(t, [{ change: change(file), backup, staged: stagedPath(runId, file) }])).toEqual(['staged']);
    expect(readFileSync(file, 'utf8')).toBe(OLD);
    expect(statSync(file).mtimeMs).toBe(before.mtimeMs);
    expect(readFileSync(backup, 'utf8')).toBe(OLD);
    expect(statSync(path.join(dir, 'backups')).mode & 0o777).toBe(0o700);
    const staged = statSync(stagedPath(runId, file));
    expect(readFileSync(stagedPath(runId, file), 'utf8')).toBe(NEW);
    expect(staged.mode & 0o777).toBe(0o640);
    expect(readdirSync(dir).sort()).toEqual(['.rollout-staged.20261126T000000Z-abcdef.config.yaml', 'backups', 'config.yaml']);

    expect(await commitStaged(t, [commitOf(file, runId)])).toBe('committed');
    expect(readFileSync(file, 'utf8')).toBe(NEW);
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect(existsSync(stagedPath(runId, file))).toBe(false);
    // Committing again finds the new content: nothing to move, still fine.
    expect(await commitStaged(t, [commitOf(file, runId)])).toBe('committed');
  });

  it('a file changed since the plan is stale: nothing staged, nothing backed up, nothing committed', async () => {
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, 'edited by hand\n');
    const backup = path.join(dir, 'backups', runId, 'config.yaml');
    expect(await stageFiles(t, [{ change: change(file), backup, staged: stagedPath(runId, file) }])).toEqual(['stale']);
    expect(existsSync(backup)).toBe(false);
    expect(existsSync(stagedPath(runId, file))).toBe(false);

    writeFileSync(stagedPath(runId, file), NEW);
    chmodSync(stagedPath(runId, file), 0o640);
    expect(await commitStaged(t, [commitOf(file, runId)])).toBe('stale');
    expect(readFileSync(file, 'utf8')).toBe('edited by hand\n');
  });

  it('a file already holding the new content needs no staging', async () => {
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, NEW);
    expect(await stageFiles(t, [{ change: change(file), backup: path.join(dir, 'b', 'x'), staged: stagedPath(runId, file) }])).toEqual(['already']);
    expect(existsSync(path.join(dir, 'b', 'x'))).toBe(false);
    expect(existsSync(stagedPath(runId, file))).toBe(false);
  });

  it('stages several files in one command, each with its own bytes, owner and mode (a stale one among them kept out)', async () => {
    const files = ['a.yaml', 'b.env', 'c.sh', 'd.yaml'].map((f) => path.join(dir, f));
    const contents = [`${NEW}a\n`, '', 'binary \u0000\u00ff\n\n', `${NEW}d\n`];
    const modes = [0o640, 0o600, 0o750, 0o644];
    files.forEach((f) => writeFileSync(f, OLD));
    writeFileSync(files[3]!, 'edited by hand\n');
    const items = files.map((f, i) => ({
      change: { ...change(f, modes[i]), after: contents[i]!, afterSha256: sha256(Buffer.from(contents[i]!)) },
      backup: path.join(dir, 'backups', runId, path.basename(f)),
      staged: stagedPath(runId, f),
    }));
    expect(await stageFiles(t, items)).toEqual(['staged', 'staged', 'staged', 'stale']);
    expect(t.commands).toHaveLength(1);
    for (const i of [0, 1, 2]) {
      expect(readFileSync(items[i]!.staged, 'utf8')).toBe(contents[i]);
      expect(statSync(items[i]!.staged).mode & 0o7777).toBe(modes[i]);
      expect(readFileSync(items[i]!.backup, 'utf8')).toBe(OLD);
      expect(readFileSync(files[i]!, 'utf8')).toBe(OLD);
    }
    expect(existsSync(items[3]!.staged)).toBe(false);
    expect(existsSync(items[3]!.backup)).toBe(false);
  });

  it.runIf(uid === 0)('gives a staged copy its planned owner: another user\'s, and ours in a set-group-id directory', async () => {
    const other = path.join(dir, 'other.yaml');
    const sgid = path.join(dir, 'sgid');
    mkdirSync(sgid);
    chownSync(sgid, 0, 5);
    chmodSync(sgid, 0o2755);
    const mine = path.join(sgid, 'mine.yaml');
    for (const f of [other, mine]) writeFileSync(f, OLD);
    const items = [
      { change: { ...change(other), uid: 1, gid: 1 }, backup: path.join(dir, 'backups', runId, 'other.yaml'), staged: stagedPath(runId, other) },
      { change: change(mine), backup: path.join(dir, 'backups', runId, 'mine.yaml'), staged: stagedPath(runId, mine) },
    ];
    expect(await stageFiles(t, items)).toEqual(['staged', 'staged']);
    expect(statSync(items[0]!.staged)).toMatchObject({ uid: 1, gid: 1 });
    // Created in the set-group-id directory, the copy had its group (5): the planned one is ours.
    expect(statSync(items[1]!.staged)).toMatchObject({ uid, gid });
  });

  it('refuses a staged copy that is not the planned content or mode, before moving any file', async () => {
    const first = path.join(dir, 'a.yaml');
    const second = path.join(dir, 'b.yaml');
    for (const f of [first, second]) {
      writeFileSync(f, OLD);
      writeFileSync(stagedPath(runId, f), NEW);
      chmodSync(stagedPath(runId, f), 0o640);
    }
    writeFileSync(stagedPath(runId, second), `${NEW}tampered\n`);
    await expect(commitStaged(t, [commitOf(first, runId), commitOf(second, runId)])).rejects.toThrow(/staged copy of .*b\.yaml is not the planned content/);
    expect(readFileSync(first, 'utf8')).toBe(OLD);

    writeFileSync(stagedPath(runId, second), NEW);
    chmodSync(stagedPath(runId, second), 0o644);
    await expect(commitStaged(t, [commitOf(first, runId), commitOf(second, runId)])).rejects.toThrow(/does not have the planned owner and mode/);
    expect(readFileSync(first, 'utf8')).toBe(OLD);
  });
});

describe('restoreFile', () => {
  const setup = () => {
    const file = path.join(dir, 'config.yaml');
    const backup = path.join(dir, 'backup.yaml');
    writeFileSync(backup, OLD);
    chmodSync(backup, 0o640);
    writeFileSync(file, NEW);
    return { file, entry: { backup, path: file, beforeSha256: sha256(Buffer.from(OLD)) } };
  };

  it('puts the backup back while the file holds what the caller saw there, with its mode, the request on stdin', async () => {
    const { file, entry } = setup();
    expect(await restoreFile(t, entry, sha256(Buffer.from(NEW)))).toBe('restored');
    expect(readFileSync(file, 'utf8')).toBe(OLD);
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect(t.commands[0]).not.toContain(dir);
    expect(readdirSync(dir).sort()).toEqual(['backup.yaml', 'config.yaml']);
    expect(await restoreFile(t, entry, sha256(Buffer.from(NEW)))).toBe('already');
  });

  it('never overwrites an edit made since the caller looked: the file keeps it, nothing is left beside it', async () => {
    const { file, entry } = setup();
    writeFileSync(file, 'edited by hand after the check\n');
    await expect(restoreFile(t, entry, sha256(Buffer.from(NEW)))).rejects.toThrow(/changed since rollout last read it, so the backup was not put back/);
    expect(readFileSync(file, 'utf8')).toBe('edited by hand after the check\n');
    expect(readdirSync(dir).sort()).toEqual(['backup.yaml', 'config.yaml']);
    // Forced (null): whatever it holds now is replaced.
    expect(await restoreFile(t, entry, null)).toBe('restored');
    expect(readFileSync(file, 'utf8')).toBe(OLD);
  });
});
