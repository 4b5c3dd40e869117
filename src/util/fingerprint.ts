// Secrets made distinguishable without being shown: a short HMAC of the value
// under a key that lives on the operator's machine, never with a plan, report
// or node. A short secret's plain hash could be found by trying values; its
// keyed one cannot without the key.
import { createHmac, randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';

/** Where the key lives: ROLLOUT_FINGERPRINT_KEY_FILE, else $XDG_CONFIG_HOME/rollout/fingerprint.key (~/.config when unset). */
export function fingerprintKeyFile(env: NodeJS.ProcessEnv = process.env): string {
  if (env.ROLLOUT_FINGERPRINT_KEY_FILE) return path.resolve(env.ROLLOUT_FINGERPRINT_KEY_FILE);
  return path.join(env.XDG_CONFIG_HOME || path.join(homedir(), '.config'), 'rollout', 'fingerprint.key');
}

/**
 * The operator's fingerprint key (32 random bytes, hex), made on first use:
 * the directory 0700, the file 0600, linked into place whole (two runs at once
 * read the one that won). The same key gives the same fingerprints across runs.
 */
export async function loadFingerprintKey(file = fingerprintKeyFile()): Promise<Buffer> {
  const read = async () => Buffer.from((await readFile(file, 'utf8')).trim(), 'hex');
  try {
    const key = await read();
    if (key.length >= 16) return key;
    throw new Error(`${file} holds no fingerprint key (64 hex digits); remove it and rollout makes a new one`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  // Written whole beside it, then linked into place: a run that reads it never sees it half-written.
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  const handle = await open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(`${randomBytes(32).toString('hex')}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await unlink(tmp);
  }
  return read();
}

/** Pure. A fingerprinter: the first 6 hex digits of HMAC-SHA256(key, value). */
export function fingerprinter(key: Buffer): (value: string) => string {
  return (value) => createHmac('sha256', key).update(value, 'utf8').digest('hex').slice(0, 6);
}
