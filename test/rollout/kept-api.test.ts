// KeptApi against a real HTTPS server on loopback, reached through a transport
// whose connect() is a real TCP connection, the CA read by a real command.
import { mkdirSync, mkdtempSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { ForwardingRefusedError } from '../../src/errors.js';
import { KeptApi, pemCertificates, splitHostPort } from '../../src/rollout/kept-api.js';
import type { ApiTarget } from '../../src/rollout/service-probe.js';
import { LocalTransport } from '../helpers/local-transport.js';
import { countingServer, makeTls, type CountingServer } from '../helpers/test-tls.js';

let dir: string;
let server: CountingServer;
let t: LocalTransport;
let api: KeptApi;
const target = (over: Partial<ApiTarget> = {}): ApiTarget => ({ host: `kms-1:${server.port}`, ca: path.join(dir, 'ca.pem'), insecure: false, ...over });

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rollout-kept-api-'));
  makeTls(dir, 'kms-1');
  mkdirSync(path.join(dir, 'CAs'));
  copyFileSync(path.join(dir, 'ca.pem'), path.join(dir, 'CAs', 'ca.pem'));
});
beforeEach(async () => {
  server = await countingServer(dir);
  t = new LocalTransport();
  api = new KeptApi(t);
});
afterEach(async () => {
  api.close();
  await server.close();
});

describe('splitHostPort and pemCertificates', () => {
  it('splits names, addresses and bracketed IPv6; refuses what is not HOST:PORT', () => {
    expect(splitHostPort('kms-1:7373')).toEqual({ host: 'kms-1', port: 7373 });
    expect(splitHostPort('10.0.0.5:7373')).toEqual({ host: '10.0.0.5', port: 7373 });
    expect(splitHostPort('[fd00::5]:7373')).toEqual({ host: 'fd00::5', port: 7373 });
    for (const bad of ['kms-1', 'kms-1:', 'kms-1:0', 'kms-1:70000', 'fd00::5:7373']) expect(splitHostPort(bad), bad).toBeNull();
  });

  it('finds every certificate in a file of several, ignoring other text and keys', () => {
    const cert = (n: number) => `-----BEGIN CERTIFICATE-----\nMII${n}\n-----END CERTIFICATE-----`;
    expect(pemCertificates(`# bundle\n${cert(1)}\n-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n${cert(2)}\n`)).toEqual([cert(1), cert(2)]);
    expect(pemCertificates('not a certificate')).toEqual([]);
  });
});

describe('KeptApi', () => {
  it('asks /v1/health/ready over one TLS connection kept between questions, checked against the CA', async () => {
    expect(api.warm(target())).toBe(false);
    expect(await api.ready(target())).toBe(true);
    expect(api.warm(target())).toBe(true);
    expect(await api.ready(target())).toBe(true);
    expect(await api.ready(target())).toBe(true);
    expect([server.connections, server.requests, t.connects]).toEqual([1, 3, 1]);
    // The CA was read from the node once, by a command naming only its path.
    expect(t.commands).toEqual([expect.stringContaining(path.join(dir, 'ca.pem'))]);
  });

  it('reads a CA directory as ready.sh does: every file in it', async () => {
    expect(await api.ready(target({ ca: path.join(dir, 'CAs') }))).toBe(true);
  });

  it('says not ready on any other status, and keeps the connection', async () => {
    server.status = 503;
    expect(await api.ready(target())).toBe(false);
    expect(api.warm(target())).toBe(true);
    server.status = 200;
    expect(await api.ready(target())).toBe(true);
    expect(server.connections).toBe(1);
  });

  it('notices a connection the server closed (a restart) before the next question, and opens a new one', async () => {
    expect(await api.ready(target())).toBe(true);
    server.server.closeAllConnections();
    await vi.waitFor(() => expect(api.warm(target())).toBe(false), { timeout: 10_000 });
    expect(await api.ready(target())).toBe(true);
    expect(server.connections).toBe(2);
  });

  it('tries again after nothing listened (a node still starting)', async () => {
    const port = server.port;
    await server.close();
    expect(await api.ready(target({ host: `kms-1:${port}` }))).toBe(false);
    server.server.listen(port, '127.0.0.1');
    await new Promise((r) => server.server.once('listening', r));
    expect(await api.ready(target({ host: `kms-1:${port}` }))).toBe(true);
    expect(t.connects).toBe(2);
  });

  it('gives up for the run on a certificate it cannot trust: the wrong name, or a CA that did not sign it', async () => {
    expect(await api.ready(target({ host: `kms-9:${server.port}` }))).toBe(false);
    expect(await api.ready(target({ host: `kms-9:${server.port}` }))).toBe(false);
    expect(t.connects).toBe(1);
    const otherCa = mkdtempSync(path.join(tmpdir(), 'rollout-kept-api-other-'));
    makeTls(otherCa, 'kms-1');
    const other = new KeptApi(t);
    expect(await other.ready(target({ ca: path.join(otherCa, 'ca.pem') }))).toBe(false);
    expect(await other.ready(target())).toBe(false);
    expect(t.connects).toBe(2);
    other.close();
  });

  it('gives up for the run when the node refuses forwarding, without asking again', async () => {
    let tries = 0;
    const refusing = Object.assign(new LocalTransport(), {
      connect: () => {
        tries++;
        return Promise.reject(new ForwardingRefusedError('local', 'the node did not open a connection (administratively prohibited)'));
      },
    });
    const refused = new KeptApi(refusing);
    expect(await refused.ready(target())).toBe(false);
    refused.warmUp(target());
    expect(await refused.ready(target())).toBe(false);
    expect(tries).toBe(1);
    refused.close();
  });

  it('with insecure, reads no CA; with no CA at all (the node\'s own trust store), never connects', async () => {
    expect(await api.ready(target({ ca: null, insecure: true }))).toBe(true);
    expect(t.commands).toEqual([]);
    const none = new KeptApi(t);
    expect(await none.ready(target({ ca: null }))).toBe(false);
    expect(t.connects).toBe(1);
    none.close();
  });
});
