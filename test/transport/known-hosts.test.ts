import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkHostKey, hostMatches, knownKeyTypes, parseKnownHosts } from '../../src/transport/known-hosts.js';

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
});
