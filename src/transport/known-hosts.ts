import { createHash, createHmac } from 'node:crypto';

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

/** The name OpenSSH looks up: `host` on port 22, else `[host]:port`. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** Pure. Whether `patterns` (comma list, hashed `|1|salt|hash`, `*`/`?`, `!negation`) names `name`. */
export function hostMatches(patterns: string, name: string): boolean {
  if (patterns.startsWith('|1|')) {
    const [, , salt, hash] = patterns.split('|');
    if (!salt || !hash) return false;
    const mac = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64');
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

/** OpenSSH's `SHA256:...` fingerprint of a raw public key blob. */
export function fingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}
