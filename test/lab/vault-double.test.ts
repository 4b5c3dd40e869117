// The lab's Vault double (lab/vault-double.mjs), started in-process and
// exercised over real HTTP(S): it must answer as vault-api.md says Vault does.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startVaultDouble, type VaultDouble, type VaultDoubleRequest, type VaultDoubleState, type VaultPolicy } from '../../lab/vault-double.mjs';

const KEY = 'aistor-key-manager-hsm';
const ROLE_ID = '3f1c2a9e-lab-role';
const SECRET = 'lab-secret-9d4f0c2b';
const JWT = 'eyJhbGciOiJSUzI1NiJ9.lab.sig';
const minkmsPolicy = (): VaultPolicy => ({
  [`transit/encrypt/${KEY}`]: ['update'],
  [`transit/decrypt/${KEY}`]: ['update'],
  [`transit/hmac/${KEY}`]: ['update'],
});

function state(): VaultDoubleState {
  return {
    sealed: false,
    initialized: true,
    standby: false,
    namespaces: {
      '': {
        approle: {
          mount: 'approle',
          roles: {
            [ROLE_ID]: { secret_id: SECRET, policies: ['minkms'], secret_id_num_uses: 0 },
            'once-role': { secret_id: 'once-secret', policies: ['minkms'], secret_id_num_uses: 1 },
            'no-hmac-role': { secret_id: 'no-hmac-secret', policies: ['no-hmac'] },
            'glob-role': { secret_id: 'glob-secret', policies: ['glob'] },
          },
        },
        kubernetes: { mount: 'kubernetes', roles: { minkms: { jwt: JWT, policies: ['minkms'] } } },
        policies: {
          minkms: minkmsPolicy(),
          'no-hmac': { [`transit/encrypt/${KEY}`]: ['update'], [`transit/decrypt/${KEY}`]: ['update'] },
          // The policy allows a key the transit mount does not have.
          glob: { 'transit/*': ['update'], 'transit/hmac/secret-*': ['deny'] },
        },
        transit: { mount: 'transit', keys: [KEY] },
      },
      'ns-1': {
        approle: { mount: 'approle', roles: { 'ns-role': { secret_id: 'ns-secret', policies: ['minkms'] } } },
        policies: { minkms: minkmsPolicy() },
        transit: { mount: 'transit', keys: [KEY] },
      },
    },
  };
}

type Reply = { status: number; body: any };

let vault: VaultDouble;

async function call(method: string, apiPath: string, opts: { body?: unknown; token?: string; namespace?: string; agent?: string } = {}): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (opts.agent !== undefined) headers['User-Agent'] = opts.agent;
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  if (opts.token !== undefined) headers['X-Vault-Token'] = opts.token;
  if (opts.namespace !== undefined) headers['X-Vault-Namespace'] = opts.namespace;
  const res = await fetch(`${vault.url}/v1/${apiPath}`, {
    method,
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text) };
}

async function admin(method: string, p: string, body?: unknown): Promise<Reply> {
  const res = await fetch(`${vault.adminUrl}${p}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text) };
}

async function approleLogin(roleId = ROLE_ID, secretId = SECRET, namespace?: string): Promise<string> {
  const r = await call('POST', 'auth/approle/login', { body: { role_id: roleId, secret_id: secretId }, namespace });
  expect(r.status).toBe(200);
  return r.body.auth.client_token as string;
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

beforeAll(async () => {
  vault = await startVaultDouble({ config: state(), port: 0, adminPort: 0 });
});
afterAll(async () => {
  await vault.close();
});
afterEach(async () => {
  expect((await admin('POST', '/reset')).status).toBe(204);
});

describe('vault double: sys/health', () => {
  it('reports active (200), standby (429), sealed (503) and not initialised (501) without a token', async () => {
    const active = await call('GET', 'sys/health');
    expect(active.status).toBe(200);
    expect(active.body).toMatchObject({ initialized: true, sealed: false, standby: false, version: '1.17.2', cluster_name: 'vault-double' });

    expect((await admin('PUT', '/state', { ...state(), standby: true })).status).toBe(204);
    const standby = await call('GET', 'sys/health');
    expect(standby.status).toBe(429);
    expect(standby.body).toMatchObject({ standby: true, sealed: false });

    expect((await admin('PUT', '/state', { ...state(), sealed: true })).status).toBe(204);
    const sealed = await call('GET', 'sys/health');
    expect(sealed.status).toBe(503);
    expect(sealed.body).toMatchObject({ initialized: true, sealed: true });

    expect((await admin('PUT', '/state', { ...state(), initialized: false, sealed: true })).status).toBe(204);
    expect((await call('GET', 'sys/health')).status).toBe(501);
  });

  it('when sealed, answers every other endpoint 503 "Vault is sealed", even a token from before', async () => {
    const token = await approleLogin();
    expect((await admin('PUT', '/state', { ...state(), sealed: true })).status).toBe(204);
    expect(await call('POST', 'auth/approle/login', { body: { role_id: ROLE_ID, secret_id: SECRET } })).toEqual({
      status: 503,
      body: { errors: ['Vault is sealed'] },
    });
    expect(await call('POST', `transit/hmac/${KEY}`, { token, body: { input: b64('x') } })).toEqual({
      status: 503,
      body: { errors: ['Vault is sealed'] },
    });
  });
});

describe('vault double: login', () => {
  it('AppRole: a good role_id and secret_id give a token with the role\'s policies; PUT works like POST', async () => {
    const r = await call('PUT', 'auth/approle/login', { body: { role_id: ROLE_ID, secret_id: SECRET } });
    expect(r.status).toBe(200);
    expect(r.body.auth).toMatchObject({ lease_duration: 1200, renewable: true });
    expect(r.body.auth.client_token).toMatch(/^hvs\.[A-Za-z0-9_-]{20,}$/);
    expect(r.body.auth.accessor).toEqual(expect.any(String));
    expect(r.body.auth.token_policies).toContain('minkms');
    expect(r.body.auth.policies).toContain('minkms');
  });

  it('AppRole: a wrong secret or an unknown role is 400 "invalid role or secret ID"', async () => {
    const bad = { status: 400, body: { errors: ['invalid role or secret ID'] } };
    expect(await call('POST', 'auth/approle/login', { body: { role_id: ROLE_ID, secret_id: 'wrong' } })).toEqual(bad);
    expect(await call('POST', 'auth/approle/login', { body: { role_id: 'no-such-role', secret_id: SECRET } })).toEqual(bad);
  });

  it('AppRole: secret_id_num_uses limits the logins; admin reset restores them', async () => {
    await approleLogin('once-role', 'once-secret');
    const again = await call('POST', 'auth/approle/login', { body: { role_id: 'once-role', secret_id: 'once-secret' } });
    expect(again).toEqual({ status: 400, body: { errors: ['invalid role or secret ID'] } });
    await admin('POST', '/reset');
    await approleLogin('once-role', 'once-secret');
  });

  it('Kubernetes: role + jwt log in; an unknown role is 400, a wrong jwt 403', async () => {
    const ok = await call('POST', 'auth/kubernetes/login', { body: { role: 'minkms', jwt: JWT } });
    expect(ok.status).toBe(200);
    expect(ok.body.auth.token_policies).toContain('minkms');
    const token = ok.body.auth.client_token as string;
    expect((await call('POST', `transit/hmac/${KEY}`, { token, body: { input: b64('k8s') } })).status).toBe(200);

    expect(await call('POST', 'auth/kubernetes/login', { body: { role: 'nope', jwt: JWT } })).toEqual({
      status: 400,
      body: { errors: ['invalid role name "nope"'] },
    });
    expect(await call('POST', 'auth/kubernetes/login', { body: { role: 'minkms', jwt: 'forged' } })).toEqual({
      status: 403,
      body: { errors: ['permission denied'] },
    });
  });

  it('an auth mount that does not exist is 404 "no handler for route"', async () => {
    expect(await call('POST', 'auth/approle2/login', { body: { role_id: ROLE_ID, secret_id: SECRET } })).toEqual({
      status: 404,
      body: { errors: ['no handler for route "auth/approle2/login". route entry not found.'] },
    });
  });
});

describe('vault double: tokens and namespaces', () => {
  it('a protected path without a token, or with an unknown one, is 403 "permission denied"', async () => {
    const denied = { status: 403, body: { errors: ['permission denied'] } };
    expect(await call('POST', `transit/hmac/${KEY}`, { body: { input: b64('x') } })).toEqual(denied);
    expect(await call('POST', `transit/hmac/${KEY}`, { token: 'hvs.not-a-token', body: { input: b64('x') } })).toEqual(denied);
    expect(await call('POST', 'sys/capabilities-self', { body: { paths: ['x'] } })).toEqual(denied);
  });

  it('a token works only in the namespace it logged in to (ns-1 and ns-1/ are the same)', async () => {
    const token = await approleLogin('ns-role', 'ns-secret', 'ns-1');
    expect((await call('POST', `transit/hmac/${KEY}`, { token, namespace: 'ns-1/', body: { input: b64('x') } })).status).toBe(200);
    expect(await call('POST', `transit/hmac/${KEY}`, { token, body: { input: b64('x') } })).toEqual({
      status: 403,
      body: { errors: ['permission denied'] },
    });
    const rootToken = await approleLogin();
    expect((await call('POST', `transit/hmac/${KEY}`, { token: rootToken, namespace: 'ns-1', body: { input: b64('x') } })).status).toBe(403);
    // The namespace's role is unknown in the root namespace.
    expect((await call('POST', 'auth/approle/login', { body: { role_id: 'ns-role', secret_id: 'ns-secret' } })).status).toBe(400);
  });

  it('revoke-self answers 204 and the token stops working', async () => {
    const token = await approleLogin();
    const r = await call('POST', 'auth/token/revoke-self', { token });
    expect(r.status).toBe(204);
    expect(r.body).toBeUndefined();
    expect(await call('POST', `transit/hmac/${KEY}`, { token, body: { input: b64('x') } })).toEqual({
      status: 403,
      body: { errors: ['permission denied'] },
    });
  });
});

describe('vault double: sys/capabilities-self', () => {
  it('lists each path\'s capabilities, "deny" when nothing matches, without checking that the key exists', async () => {
    const token = await approleLogin();
    const paths = [`transit/encrypt/${KEY}`, `transit/hmac/${KEY}`, 'transit/encrypt/other-key', 'secret/data/x'];
    const r = await call('POST', 'sys/capabilities-self', { token, body: { paths } });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      [`transit/encrypt/${KEY}`]: ['update'],
      [`transit/hmac/${KEY}`]: ['update'],
      'transit/encrypt/other-key': ['deny'],
      'secret/data/x': ['deny'],
    });

    const one = await call('POST', 'sys/capabilities-self', { token, body: { path: `transit/decrypt/${KEY}` } });
    expect(one.body).toMatchObject({ [`transit/decrypt/${KEY}`]: ['update'], capabilities: ['update'] });

    // A `*` glob grants a key that does not exist: the ACL says yes, transit then says no.
    const glob = await approleLogin('glob-role', 'glob-secret');
    const g = await call('POST', 'sys/capabilities-self', { token: glob, body: { paths: ['transit/encrypt/missing-key', 'transit/hmac/secret-1'] } });
    expect(g.body).toMatchObject({ 'transit/encrypt/missing-key': ['update'], 'transit/hmac/secret-1': ['deny'] });
  });

  it('shows a policy lacking hmac, and the HMAC itself is then 403', async () => {
    const token = await approleLogin('no-hmac-role', 'no-hmac-secret');
    const r = await call('POST', 'sys/capabilities-self', { token, body: { paths: [`transit/encrypt/${KEY}`, `transit/hmac/${KEY}`] } });
    expect(r.body).toMatchObject({ [`transit/encrypt/${KEY}`]: ['update'], [`transit/hmac/${KEY}`]: ['deny'] });
    expect(await call('POST', `transit/hmac/${KEY}`, { token, body: { input: b64('x') } })).toEqual({
      status: 403,
      body: { errors: ['permission denied'] },
    });
  });
});

describe('vault double: transit', () => {
  it('encrypts to vault:v1: and decrypts back (AES-256-GCM: same plaintext, different ciphertexts)', async () => {
    const token = await approleLogin();
    const plaintext = b64(Buffer.from([0, 1, 2, 250, 251, 252]));
    const e1 = await call('POST', `transit/encrypt/${KEY}`, { token, body: { plaintext } });
    const e2 = await call('PUT', `transit/encrypt/${KEY}`, { token, body: { plaintext } });
    expect(e1.status).toBe(200);
    expect(e1.body.data.ciphertext).toMatch(/^vault:v1:[A-Za-z0-9+/]+=*$/);
    expect(e1.body.data.key_version).toBe(1);
    expect(e2.body.data.ciphertext).not.toBe(e1.body.data.ciphertext);
    for (const e of [e1, e2]) {
      const d = await call('POST', `transit/decrypt/${KEY}`, { token, body: { ciphertext: e.body.data.ciphertext } });
      expect(d).toMatchObject({ status: 200, body: { data: { plaintext } } });
    }
  });

  it('a restarted double still decrypts what an earlier one encrypted', async () => {
    const token = await approleLogin();
    const e = await call('POST', `transit/encrypt/${KEY}`, { token, body: { plaintext: b64('root key') } });
    const other = await startVaultDouble({ config: state() });
    try {
      const login = await fetch(`${other.url}/v1/auth/approle/login`, { method: 'POST', body: JSON.stringify({ role_id: ROLE_ID, secret_id: SECRET }) });
      const t2 = ((await login.json()) as any).auth.client_token as string;
      const d = await fetch(`${other.url}/v1/transit/decrypt/${KEY}`, {
        method: 'POST', headers: { 'X-Vault-Token': t2 }, body: JSON.stringify({ ciphertext: e.body.data.ciphertext }),
      });
      expect(d.status).toBe(200);
      expect(((await d.json()) as any).data.plaintext).toBe(b64('root key'));
    } finally {
      await other.close();
    }
  });

  it('rejects a tampered or malformed ciphertext with 400 "invalid ciphertext: ..."', async () => {
    const token = await approleLogin();
    const e = await call('POST', `transit/encrypt/${KEY}`, { token, body: { plaintext: b64('abc') } });
    const raw = Buffer.from(e.body.data.ciphertext.slice('vault:v1:'.length), 'base64');
    raw[raw.length - 1]! ^= 1;
    for (const ciphertext of [`vault:v1:${raw.toString('base64')}`, 'not-vault', 'vault:v1:%%%']) {
      const d = await call('POST', `transit/decrypt/${KEY}`, { token, body: { ciphertext } });
      expect(d.status).toBe(400);
      expect(d.body.errors[0]).toMatch(/^invalid ciphertext: /);
    }
  });

  it('hmac: vault:v1: + HMAC, stable for the same input, sha2-256 by default, sha2-384/512 by path', async () => {
    const token = await approleLogin();
    const h = async (suffix = '', input = b64('hello')) => call('POST', `transit/hmac/${KEY}${suffix}`, { token, body: { input } });
    const a = await h();
    expect(a.status).toBe(200);
    expect(a.body.data.hmac).toMatch(/^vault:v1:/);
    expect(Buffer.from(a.body.data.hmac.slice(9), 'base64')).toHaveLength(32);
    expect((await h()).body.data.hmac).toBe(a.body.data.hmac);
    expect((await h('', b64('other'))).body.data.hmac).not.toBe(a.body.data.hmac);
    // hmac/<key>/<alg> is another path: the exact-path policy does not cover it.
    expect((await h('/sha2-512')).status).toBe(403);
    const glob = await approleLogin('glob-role', 'glob-secret');
    for (const [alg, len] of [['sha2-256', 32], ['sha2-384', 48], ['sha2-512', 64]] as const) {
      const r = await call('POST', `transit/hmac/${KEY}/${alg}`, { token: glob, body: { input: b64('hello') } });
      expect(r.status).toBe(200);
      expect(Buffer.from(r.body.data.hmac.slice(9), 'base64')).toHaveLength(len);
    }
  });

  it('a key the policy allows but the mount lacks is 400 "encryption key not found"', async () => {
    const token = await approleLogin('glob-role', 'glob-secret');
    for (const op of ['encrypt', 'decrypt', 'hmac']) {
      const body = op === 'encrypt' ? { plaintext: b64('x') } : op === 'decrypt' ? { ciphertext: 'vault:v1:AAAA' } : { input: b64('x') };
      expect(await call('POST', `transit/${op}/missing-key`, { token, body })).toEqual({
        status: 400,
        body: { errors: ['encryption key not found'] },
      });
    }
  });

  it('each operation needs update on its own path: a policy change takes effect for live tokens', async () => {
    const token = await approleLogin();
    const s = state();
    delete s.namespaces['']!.policies!.minkms![`transit/decrypt/${KEY}`];
    expect((await admin('PUT', '/state', s)).status).toBe(204);
    expect((await call('POST', `transit/encrypt/${KEY}`, { token, body: { plaintext: b64('x') } })).status).toBe(200);
    expect((await call('POST', `transit/decrypt/${KEY}`, { token, body: { ciphertext: 'vault:v1:AAAA' } })).status).toBe(403);
  });
});

describe('vault double: admin API', () => {
  it('GET /state returns the state; PUT /state replaces it and refuses a malformed one; POST /reset restores the start config', async () => {
    expect((await admin('GET', '/state')).body).toEqual(state());
    const changed = state();
    changed.namespaces['']!.approle!.roles[ROLE_ID]!.secret_id = 'rotated';
    expect((await admin('PUT', '/state', changed)).status).toBe(204);
    expect((await admin('GET', '/state')).body).toEqual(changed);
    expect((await call('POST', 'auth/approle/login', { body: { role_id: ROLE_ID, secret_id: SECRET } })).status).toBe(400);
    await approleLogin(ROLE_ID, 'rotated');

    const bad = await admin('PUT', '/state', { namespaces: { '': { approle: { roles: { r: { secret_id: 42 } } } } } });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toContain('secret_id');
    expect(bad.body.error).not.toContain('42');

    const token = await approleLogin(ROLE_ID, 'rotated');
    expect((await admin('POST', '/reset')).status).toBe(204);
    expect((await admin('GET', '/state')).body).toEqual(state());
    // Tokens are gone after a reset.
    expect((await call('POST', `transit/hmac/${KEY}`, { token, body: { input: b64('x') } })).status).toBe(403);
  });

  it('GET /requests lists every Vault request (method, path, namespace, status, user agent) without bodies or tokens; DELETE clears it', async () => {
    const token = await approleLogin();
    await call('POST', `transit/hmac/${KEY}`, { token, namespace: 'ns-1', body: { input: b64('x') } });
    await call('GET', 'sys/health?standbyok=true', { agent: 'curl/7.88.1' });
    const log = (await admin('GET', '/requests')).body as VaultDoubleRequest[];
    expect(log).toEqual([
      { method: 'POST', path: '/v1/auth/approle/login', namespace: '', status: 200, agent: expect.any(String) },
      { method: 'POST', path: `/v1/transit/hmac/${KEY}`, namespace: 'ns-1', status: 403, agent: expect.any(String) },
      { method: 'GET', path: '/v1/sys/health', namespace: '', status: 200, agent: 'curl/7.88.1' },
    ]);
    const text = JSON.stringify(log);
    expect(text).not.toContain(token);
    expect(text).not.toContain(SECRET);
    expect((await admin('DELETE', '/requests')).status).toBe(204);
    expect((await admin('GET', '/requests')).body).toEqual([]);
  });
});

describe('vault double: HTTPS and config file', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vault-double-tls-'));
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=test CA', '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-addext', 'basicConstraints=critical,CA:TRUE');
    ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost',
      '-keyout', 'server-key.pem', '-out', 'server.csr');
    writeFileSync(path.join(dir, 'ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-set_serial', '1', '-days', '2',
      '-extfile', 'ext', '-out', 'server.pem');
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(state()));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function httpsGet(url: string, ca?: Buffer): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = https.request(url, { ca: ca ?? [] as unknown as string[] }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('serves HTTPS with the tls dir\'s certificate, trusted through its CA only; loads a config file', async () => {
    const tls = await startVaultDouble({ config: path.join(dir, 'config.json'), tlsDir: dir });
    try {
      expect(tls.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect(tls.adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const ca = execFileSync('cat', [path.join(dir, 'ca.pem')]);
      for (const host of ['127.0.0.1', 'localhost']) {
        const r = await httpsGet(`${tls.url.replace('127.0.0.1', host)}/v1/sys/health`, ca);
        expect(r.status).toBe(200);
        expect(JSON.parse(r.body)).toMatchObject({ version: '1.17.2' });
      }
      await expect(httpsGet(`${tls.url}/v1/sys/health`)).rejects.toThrow(/self[- ]signed|unable to (get|verify)/i);
    } finally {
      await tls.close();
    }
  });

  it('refuses a config file that is not valid JSON without quoting it', async () => {
    const file = path.join(dir, 'broken.json');
    writeFileSync(file, '{"namespaces": {"": {"approle": {"roles": {"r": {"secret_id": "TOPSECRET"');
    const err = await startVaultDouble({ config: file }).then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(/invalid JSON/);
    expect(err?.message).not.toContain('TOPSECRET');
  });
});
