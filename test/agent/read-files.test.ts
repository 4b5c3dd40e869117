// The read script run here with the real sh and coreutils, on files in a temp
// dir: what planning may open on a node, and what it learns about each file.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, realpathSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { batchedReader, dirsAbove, MAX_FILE_BYTES, readRemoteFile, readRemoteFiles } from '../../src/agent/files.js';
import { LocalTransport } from '../helpers/local-transport.js';

let dir: string;
let t: LocalTransport;

beforeEach(() => {
  // realpath: the temp dir itself may sit behind a symlink on some systems.
  dir = realpathSync(mkdtempSync(path.join(tmpdir(), 'rollout-read-')));
  t = new LocalTransport();
});

describe('what the read opens', () => {
  it('refuses a FIFO without opening it (a read of it would never end)', async () => {
    const fifo = path.join(dir, 'config.yaml');
    execFileSync('mkfifo', [fifo]);
    await expect(readRemoteFile(t, fifo)).rejects.toThrow(`${fifo} is a FIFO, not a regular file; rollout reads and writes regular files only`);
  }, 5000);

  it('refuses a device, also behind a symlink, naming both', async () => {
    await expect(readRemoteFile(t, '/dev/null')).rejects.toThrow('/dev/null is a character device, not a regular file');
    const link = path.join(dir, 'config.yaml');
    symlinkSync('/dev/zero', link);
    await expect(readRemoteFile(t, link)).rejects.toThrow(`${link} (a symlink to /dev/zero) is a character device, not a regular file`);
  }, 5000);

  it('refuses a directory', async () => {
    mkdirSync(path.join(dir, 'config.yaml'));
    await expect(readRemoteFile(t, path.join(dir, 'config.yaml'))).rejects.toThrow('config.yaml is a directory, not a regular file');
  });

  it('reads a file of exactly the cap, and refuses one byte more', async () => {
    const ok = path.join(dir, 'ok');
    const big = path.join(dir, 'big');
    writeFileSync(ok, Buffer.alloc(MAX_FILE_BYTES, 0x61));
    writeFileSync(big, Buffer.alloc(MAX_FILE_BYTES + 1, 0x61));
    expect((await readRemoteFile(t, ok))?.content.length).toBe(MAX_FILE_BYTES);
    await expect(readRemoteFile(t, big)).rejects.toThrow(`${big} is ${MAX_FILE_BYTES + 1} bytes; rollout reads files of up to 1 MiB`);
  });

  it('refuses a symlink loop and a relative path', async () => {
    symlinkSync(path.join(dir, 'b'), path.join(dir, 'a'));
    symlinkSync(path.join(dir, 'a'), path.join(dir, 'b'));
    await expect(readRemoteFile(t, path.join(dir, 'a'))).rejects.toThrow('has a symlink along it that does not resolve');
    await expect(readRemoteFile(t, 'config.yaml')).rejects.toThrow('config.yaml is not an absolute path');
  });
});

describe('what the read reports', () => {
  it('resolves a symlinked file to its target, with the directories above both, in the same command', async () => {
    mkdirSync(path.join(dir, 'real'));
    const target = path.join(dir, 'real', 'config.yaml');
    writeFileSync(target, 'version: v1\n');
    chmodSync(target, 0o640);
    const link = path.join(dir, 'config.yaml');
    symlinkSync('real/config.yaml', link);
    const plain = path.join(dir, 'env');
    writeFileSync(plain, 'A=1\n');
    const files = await readRemoteFiles(t, [link, plain, path.join(dir, 'missing')]);
    expect(t.commands).toHaveLength(1);
    const f = files.get(link)!;
    expect(f).toMatchObject({ path: link, target, mode: 0o640 });
    expect(f.content.toString()).toBe('version: v1\n');
    // The target's directories up to /, then the link's own (already there).
    expect(f.dirs!.map((d) => d.path)).toEqual(dirsAbove(target));
    const realDir = statSync(path.join(dir, 'real'));
    expect(f.dirs![0]).toEqual({ path: path.join(dir, 'real'), uid: realDir.uid, gid: realDir.gid, mode: realDir.mode & 0o7777 });
    expect(files.get(plain)).not.toHaveProperty('target');
    expect(files.get(plain)!.dirs!.map((d) => d.path)).toEqual(dirsAbove(plain));
    expect(files.get(path.join(dir, 'missing'))).toBeNull();
  });

  it('a link in another directory adds that directory\'s chain after the target\'s', async () => {
    mkdirSync(path.join(dir, 'a'));
    mkdirSync(path.join(dir, 'b'));
    writeFileSync(path.join(dir, 'b', 'real.yaml'), 'x: 1\n');
    symlinkSync(path.join(dir, 'b', 'real.yaml'), path.join(dir, 'a', 'config.yaml'));
    const f = (await readRemoteFile(t, path.join(dir, 'a', 'config.yaml')))!;
    expect(f.target).toBe(path.join(dir, 'b', 'real.yaml'));
    expect(f.dirs!.map((d) => d.path)).toEqual([...dirsAbove(path.join(dir, 'b', 'real.yaml')), path.join(dir, 'a')]);
  });

  it('dirsAbove lists every directory up to /', () => {
    expect(dirsAbove('/etc/minkms/config.yaml')).toEqual(['/etc/minkms', '/etc', '/']);
    expect(dirsAbove('/config.yaml')).toEqual(['/']);
  });

  it('batchedReader: a path that cannot be read rejects alone; the others are read in the same command', async () => {
    execFileSync('mkfifo', [path.join(dir, 'fifo')]);
    writeFileSync(path.join(dir, 'ok'), 'fine\n');
    const read = batchedReader(t);
    const [fifo, ok, newline] = await Promise.allSettled([read(path.join(dir, 'fifo')), read(path.join(dir, 'ok')), read(`${dir}/x\ny`)]);
    expect(fifo).toMatchObject({ status: 'rejected', reason: { message: expect.stringContaining('is a FIFO') } });
    expect(ok).toMatchObject({ status: 'fulfilled', value: { content: Buffer.from('fine\n') } });
    expect(newline).toMatchObject({ status: 'rejected', reason: { message: expect.stringContaining('holds a newline') } });
    expect(t.commands).toHaveLength(1);
  }, 5000);
});
