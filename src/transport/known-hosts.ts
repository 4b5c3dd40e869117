import { createHash, createHmac } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';

/** One usable line of an OpenSSH known_hosts file. */
export type KnownHostEntry = {
  marker: '@revoked' | '@cert-authority' | null;
  patterns: string;
  keyType: string;
  keyBase64: string;
};

/** How a presented host key compares with known_hosts. */
export type HostKeyVerdict =
  | { status: 'match' }
  | { status: 'unknown' }
  | { status: 'mismatch'; knownTypes: string[] }
  | { status: 'revoked' };

/** Pure. Parses known_hosts text; comments, blank and malformed lines are skipped. */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  for (const line of text.split(/\r?\n/)) {
    const fields = line.trim().split(/\s+/);
    if (fields[0] === undefined || fields[0] === '' || fields[0].startsWith('#')) continue;
    const marker = fields[0] === '@revoked' || fields[0] === '@cert-authority' ? fields.shift()! : null;
    const [patterns, keyType, keyBase64] = fields;
    if (!patterns || !keyType || !keyBase64) continue;
    entries.push({ marker: marker as KnownHostEntry['marker'], patterns, keyType, keyBase64 });
  }
  return entries;
}

// ASCII only, as OpenSSH's lowercase() (tolower in the C locale) does.
function lowercase(name: string): string {
  return name.replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

/**
 * The name OpenSSH looks up, hashes and records: `host` on port 22, else
 * `[host]:port`, lowercased as ssh lowercases its host name, so `KMS-1` finds
 * (and is checked against) the key recorded for `kms-1`.
 */
export function knownHostsName(host: string, port: number): string {
  const h = lowercase(host);
  return port === 22 ? h : `[${h}]:${port}`;
}

/** Pure. Whether `patterns` (comma list, hashed `|1|salt|hash`, `*`/`?`, `!negation`) names `name`, ignoring case. */
export function hostMatches(patterns: string, name: string): boolean {
  if (patterns.startsWith('|1|')) {
    const [, , salt, hash] = patterns.split('|');
    if (!salt || !hash) return false;
    // A hashed entry holds the hash of the lowercased name: hashing another case would miss it.
    const mac = createHmac('sha1', Buffer.from(salt, 'base64')).update(lowercase(name)).digest('base64');
    return mac === hash;
  }
  let matched = false;
  for (const raw of patterns.split(',')) {
    const negated = raw.startsWith('!');
    const pattern = negated ? raw.slice(1) : raw;
    const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i');
    if (re.test(name)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

/** Pure. Checks the key a server presented against the entries for host:port. */
export function checkHostKey(entries: readonly KnownHostEntry[], host: string, port: number, keyType: string, keyBase64: string): HostKeyVerdict {
  const name = knownHostsName(host, port);
  const mine = entries.filter((e) => e.marker !== '@cert-authority' && hostMatches(e.patterns, name));
  if (mine.some((e) => e.marker === '@revoked' && e.keyBase64 === keyBase64)) return { status: 'revoked' };
  const plain = mine.filter((e) => e.marker === null);
  if (plain.some((e) => e.keyType === keyType && e.keyBase64 === keyBase64)) return { status: 'match' };
  if (plain.length === 0) return { status: 'unknown' };
  return { status: 'mismatch', knownTypes: [...new Set(plain.map((e) => e.keyType))] };
}

/** Pure. Key types recorded for host:port, so the handshake asks the server for one of those. */
export function knownKeyTypes(entries: readonly KnownHostEntry[], host: string, port: number): string[] {
  const name = knownHostsName(host, port);
  return [...new Set(entries.filter((e) => e.marker === null && hostMatches(e.patterns, name)).map((e) => e.keyType))];
}

/**
 * Pure. The host key algorithms to ask the server for, given the key types
 * recorded for it: a recorded `ssh-rsa` key is offered with its SHA-2
 * signatures first (RFC 8332), as OpenSSH does, since OpenSSH 8.8 and later
 * refuse SHA-1 `ssh-rsa` signatures; `ssh-rsa` stays last for old servers.
 */
export function hostKeyAlgorithms(keyTypes: readonly string[]): string[] {
  return [...new Set(keyTypes.flatMap((t) => (t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t])))];
}

/**
 * Appends one line to a known_hosts file (created 0600 if missing), first
 * ending the file's last line when it has no final newline, so the new entry
 * is never glued onto the last one.
 */
export function appendKnownHost(file: string, line: string): void {
  const fd = openSync(file, 'a+', 0o600);
  try {
    const size = fstatSync(fd).size;
    const last = Buffer.alloc(1);
    const needsNewline = size > 0 && readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a;
    writeSync(fd, `${needsNewline ? '\n' : ''}${line}\n`);
  } finally {
    closeSync(fd);
  }
}

/** OpenSSH's `SHA256:...` fingerprint of a raw public key blob. */
export function fingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}
