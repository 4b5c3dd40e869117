import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { appendKnownHost, checkHostKey, hostKeyAlgorithms, hostMatches, knownHostsName, knownKeyTypes, parseKnownHosts } from '../../src/transport/known-hosts.js';

const salt = Buffer.from('0123456789abcdef0123');
const hashed = (name: string) => `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`;

const text = [
  '# comment',
  '[127.0.0.1]:2201 ssh-ed25519 AAAAkey1',
  `${hashed('[10.0.0.5]:2222')} ssh-ed25519 AAAAkey2`,
  'kms-*.example.net,!kms-9.example.net ssh-ed25519 AAAAwild',
  '@revoked kms-3.example.net ssh-ed25519 AAAAbad',
  'kms-3.example.net ssh-rsa AAAArsa',
  'garbage-line',
].join('\n');
const entries = parseKnownHosts(text);

describe('known hosts', () => {
  it('matches plain [host]:port entries', () => {
    expect(checkHostKey(entries, '127.0.0.1', 2201, 'ssh-ed25519', 'AAAAkey1')).toEqual({ status: 'match' });
  });
  it('matches hashed entries', () => {
    expect(checkHostKey(entries, '10.0.0.5', 2222, 'ssh-ed25519', 'AAAAkey2')).toEqual({ status: 'match' });
    expect(checkHostKey(entries, '10.0.0.5', 22, 'ssh-ed25519', 'AAAAkey2')).toEqual({ status: 'unknown' });
  });
  it('reports a changed key as a mismatch, not as unknown', () => {
    expect(checkHostKey(entries, '127.0.0.1', 2201, 'ssh-ed25519', 'AAAAother')).toEqual({ status: 'mismatch', knownTypes: ['ssh-ed25519'] });
  });
  it('treats a host on another port as unknown', () => {
    expect(checkHostKey(entries, '127.0.0.1', 2202, 'ssh-ed25519', 'AAAAkey1')).toEqual({ status: 'unknown' });
  });
  it('honours wildcards and negation', () => {
    expect(hostMatches('kms-*.example.net,!kms-9.example.net', 'kms-1.example.net')).toBe(true);
    expect(hostMatches('kms-*.example.net,!kms-9.example.net', 'kms-9.example.net')).toBe(false);
  });
  it('refuses a revoked key', () => {
    expect(checkHostKey(entries, 'kms-3.example.net', 22, 'ssh-ed25519', 'AAAAbad')).toEqual({ status: 'revoked' });
  });
  it('lists the key types recorded for a host', () => {
    expect(knownKeyTypes(entries, 'kms-3.example.net', 22)).toEqual(['ssh-ed25519', 'ssh-rsa']);
    expect(knownKeyTypes(entries, 'kms-9.example.net', 22)).toEqual([]);
  });
  it('ignores the case of the host name as OpenSSH does (it lowercases the name it looks up, hashes and records)', () => {
    const cased = parseKnownHosts([
      `${hashed('kms-1.example.net')} ssh-ed25519 AAAAhashed22`,
      `${hashed('[kms-1.example.net]:2222')} ssh-ed25519 AAAAhashedport`,
      'kms-2.example.net ssh-ed25519 AAAAplain22',
      '[kms-2.example.net]:2222 ssh-ed25519 AAAAplainport',
    ].join('\n'));
    for (const [host, port, key] of [
      ['KMS-1.example.net', 22, 'AAAAhashed22'],
      ['Kms-1.Example.NET', 2222, 'AAAAhashedport'],
      ['KMS-2.EXAMPLE.NET', 22, 'AAAAplain22'],
      ['kms-2.EXAMPLE.net', 2222, 'AAAAplainport'],
    ] as const) {
      expect(checkHostKey(cased, host, port, 'ssh-ed25519', key), `${host}:${port}`).toEqual({ status: 'match' });
      expect(checkHostKey(cased, host, port, 'ssh-ed25519', 'AAAAchanged'), `${host}:${port}`).toEqual({ status: 'mismatch', knownTypes: ['ssh-ed25519'] });
      expect(knownKeyTypes(cased, host, port), `${host}:${port}`).toEqual(['ssh-ed25519']);
    }
    expect(knownHostsName('KMS-1.Example.net', 22)).toBe('kms-1.example.net');
    expect(knownHostsName('KMS-1.Example.net', 2222)).toBe('[kms-1.example.net]:2222');
  });
  it('offers SHA-2 signatures first for a recorded ssh-rsa key, as OpenSSH does', () => {
    expect(hostKeyAlgorithms(['ssh-rsa'])).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
    expect(hostKeyAlgorithms(['ssh-ed25519', 'ssh-rsa'])).toEqual(['ssh-ed25519', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
    expect(hostKeyAlgorithms(['ecdsa-sha2-nistp256'])).toEqual(['ecdsa-sha2-nistp256']);
  });
  it('appends a recorded key on a line of its own, even after a last line without a newline', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rollout-known-hosts-'));
    try {
      const file = path.join(dir, 'known_hosts');
      appendKnownHost(file, 'a ssh-ed25519 AAAAa');
      expect(readFileSync(file, 'utf8')).toBe('a ssh-ed25519 AAAAa\n');
      expect(statSync(file).mode & 0o777).toBe(0o600);
      writeFileSync(file, 'b ssh-ed25519 AAAAb');
      appendKnownHost(file, 'c ssh-ed25519 AAAAc');
      appendKnownHost(file, 'd ssh-ed25519 AAAAd');
      expect(readFileSync(file, 'utf8')).toBe('b ssh-ed25519 AAAAb\nc ssh-ed25519 AAAAc\nd ssh-ed25519 AAAAd\n');
      expect(parseKnownHosts(readFileSync(file, 'utf8')).map((e) => e.keyBase64)).toEqual(['AAAAb', 'AAAAc', 'AAAAd']);
      writeFileSync(file, '');
      appendKnownHost(file, 'e ssh-ed25519 AAAAe');
      expect(readFileSync(file, 'utf8')).toBe('e ssh-ed25519 AAAAe\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
