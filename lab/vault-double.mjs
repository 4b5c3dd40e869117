// A HashiCorp Vault test double for rollout's lab and tests. Plain Node ESM,
// no dependencies. It speaks the part of Vault's HTTP API that MinIO KMS and
// rollout use (see /work/shared/reference/vault-api.md): health, AppRole and
// Kubernetes login, namespaces, ACL policies, capabilities-self, revoke-self
// and transit encrypt/decrypt/hmac with real crypto. A second, plain-HTTP
// admin API (not part of Vault) lets tests read and replace its state.
//
// CLI:
//   node lab/vault-double.mjs --config FILE [--port 8200] [--admin-port 8201] [--tls-dir DIR]
//   Listens on 127.0.0.1 only; with --tls-dir serves HTTPS with DIR/server.pem
//   and DIR/server-key.pem. Prints one line when ready:
//     vault-double: listening on https://127.0.0.1:8200 (admin http://127.0.0.1:8201)
//   then one line per Vault request on stderr (method, path, namespace,
//   status: never bodies, secrets or tokens). Exits on SIGTERM/SIGINT.
//
// In-process: startVaultDouble({ config, port: 0, adminPort: 0 }) (see
// vault-double.d.mts). Admin API: GET/PUT /state, POST /reset,
// GET/DELETE /requests (see lab/README.md).
//
// The config (= initial state) holds secrets: it is never printed, and
// neither is anything derived from a request body.

import http from 'node:http';
import https from 'node:https';
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const VERSION = '1.17.2';
const CLUSTER_NAME = 'vault-double';
const TOKEN_TTL_SECONDS = 1200;
const MAX_BODY_BYTES = 1 << 20;
// Transit key material is derived from this seed and namespace+mount+key, so
// a restarted double still decrypts what an earlier one encrypted.
const KEY_SEED = 'rollout-lab vault-double transit seed v1';
const HMAC_ALGORITHMS = { 'sha2-224': 'sha224', 'sha2-256': 'sha256', 'sha2-384': 'sha384', 'sha2-512': 'sha512' };
const CAPABILITIES = ['create', 'read', 'update', 'patch', 'delete', 'list', 'sudo', 'deny', 'root'];

// Vault's built-in `default` policy, the parts a client may touch here. A
// namespace can override it with its own policy named "default".
const DEFAULT_POLICY = {
  'sys/capabilities-self': ['update'],
  'auth/token/lookup-self': ['read'],
  'auth/token/renew-self': ['update'],
  'auth/token/revoke-self': ['update'],
};

/** The lab fleet's state, matching inventories/lab.yaml; the secret comes from the caller. */
export function labDefaultState(secretId) {
  return {
    sealed: false,
    initialized: true,
    standby: false,
    namespaces: {
      '': {
        approle: {
          mount: 'approle',
          roles: { '3f1c2a9e-lab-role': { secret_id: secretId, policies: ['minkms'], secret_id_num_uses: 0 } },
        },
        policies: {
          minkms: {
            'transit/encrypt/aistor-key-manager-hsm': ['update'],
            'transit/decrypt/aistor-key-manager-hsm': ['update'],
            'transit/hmac/aistor-key-manager-hsm': ['update'],
          },
        },
        transit: { mount: 'transit', keys: ['aistor-key-manager-hsm'] },
      },
    },
  };
}

// ---------------------------------------------------------------- state

class StateError extends Error {}

const isMap = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isStringArray = (v) => Array.isArray(v) && v.every((s) => typeof s === 'string');

// Checks the state's shape. Messages name keys, never values (values are secrets).
function validateState(s) {
  const fail = (where, what) => {
    throw new StateError(`${where}: ${what}`);
  };
  if (!isMap(s)) fail('(root)', 'not a JSON object');
  for (const k of ['sealed', 'initialized', 'standby']) {
    if (s[k] !== undefined && typeof s[k] !== 'boolean') fail(k, 'must be true or false');
  }
  if (!isMap(s.namespaces)) fail('namespaces', 'missing or not an object');
  for (const [name, ns] of Object.entries(s.namespaces)) {
    const at = `namespaces[${JSON.stringify(name)}]`;
    if (name !== normalizeNamespace(name)) fail(at, 'namespace names have no leading or trailing "/"');
    if (!isMap(ns)) fail(at, 'not an object');
    for (const method of ['approle', 'kubernetes']) {
      const a = ns[method];
      if (a === undefined) continue;
      if (!isMap(a)) fail(`${at}.${method}`, 'not an object');
      if (a.mount !== undefined && (typeof a.mount !== 'string' || a.mount === '')) fail(`${at}.${method}.mount`, 'must be a non-empty string');
      if (!isMap(a.roles)) fail(`${at}.${method}.roles`, 'missing or not an object');
      for (const [role, r] of Object.entries(a.roles)) {
        const rat = `${at}.${method}.roles[${JSON.stringify(role)}]`;
        if (!isMap(r)) fail(rat, 'not an object');
        const secretKey = method === 'approle' ? 'secret_id' : 'jwt';
        if (typeof r[secretKey] !== 'string') fail(`${rat}.${secretKey}`, 'must be a string');
        if (r.policies !== undefined && !isStringArray(r.policies)) fail(`${rat}.policies`, 'must be a list of strings');
        if (r.secret_id_num_uses !== undefined && !(Number.isInteger(r.secret_id_num_uses) && r.secret_id_num_uses >= 0)) {
          fail(`${rat}.secret_id_num_uses`, 'must be an integer >= 0');
        }
      }
    }
    if (ns.policies !== undefined) {
      if (!isMap(ns.policies)) fail(`${at}.policies`, 'not an object');
      for (const [pname, pol] of Object.entries(ns.policies)) {
        if (!isMap(pol)) fail(`${at}.policies.${pname}`, 'not an object of path -> capabilities');
        for (const [p, caps] of Object.entries(pol)) {
          const list = isMap(caps) ? caps.capabilities : caps;
          if (!isStringArray(list)) fail(`${at}.policies.${pname}[${JSON.stringify(p)}]`, 'must be a list of capabilities');
          const bad = list.find((c) => !CAPABILITIES.includes(c));
          if (bad !== undefined) fail(`${at}.policies.${pname}[${JSON.stringify(p)}]`, `unknown capability ${JSON.stringify(bad)}`);
        }
      }
    }
    if (ns.transit !== undefined) {
      if (!isMap(ns.transit)) fail(`${at}.transit`, 'not an object');
      if (ns.transit.mount !== undefined && (typeof ns.transit.mount !== 'string' || ns.transit.mount === '')) {
        fail(`${at}.transit.mount`, 'must be a non-empty string');
      }
      if (!isStringArray(ns.transit.keys)) fail(`${at}.transit.keys`, 'must be a list of key names');
    }
  }
  return s;
}

function normalizeNamespace(v) {
  return String(v ?? '').trim().replace(/^\/+|\/+$/g, '');
}

// Only the position of a JSON syntax error: V8's message quotes the source,
// which may hold a secret.
function jsonProblem(e) {
  const m = /position (\d+)/.exec(String(e && e.message));
  return m ? `invalid JSON at position ${m[1]}` : 'invalid JSON';
}

function loadStateFile(file) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new StateError(`cannot read ${file}: ${e.code || 'error'}`);
  }
  let s;
  try {
    s = JSON.parse(text);
  } catch (e) {
    throw new StateError(`${file}: ${jsonProblem(e)}`);
  }
  try {
    return validateState(s);
  } catch (e) {
    throw new StateError(`${file}: ${e.message}`);
  }
}

// ---------------------------------------------------------------- Vault API

class VaultError extends Error {
  constructor(status, ...errors) {
    super(errors.join('; '));
    this.status = status;
    this.errors = errors;
  }
}
const denied = () => new VaultError(403, 'permission denied');
const noHandler = (rel) => new VaultError(404, `no handler for route "${rel}". route entry not found.`);

function sameSecret(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && timingSafeEqual(x, y);
}

// Go's base64.StdEncoding: padded, strict alphabet.
function decodeBase64(s) {
  if (typeof s !== 'string' || s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) return undefined;
  return Buffer.from(s, 'base64');
}

function transitKey(namespace, mount, key, purpose) {
  return Buffer.from(hkdfSync('sha256', KEY_SEED, '', `${purpose}\0${namespace}\0${mount}\0${key}`, 32));
}

/** Merged ACL of a token's policies, as Vault evaluates it: exact path first, else the longest `*` prefix. */
function capabilitiesOf(policyNames, nsState, p) {
  if (policyNames.includes('root')) return ['root'];
  const exact = new Map();
  const prefix = new Map();
  const add = (map, key, caps) => map.set(key, new Set([...(map.get(key) ?? []), ...caps]));
  for (const name of policyNames) {
    const pol = nsState?.policies?.[name] ?? (name === 'default' ? DEFAULT_POLICY : undefined);
    if (!isMap(pol)) continue;
    for (const [raw, value] of Object.entries(pol)) {
      const caps = isMap(value) ? value.capabilities : value;
      if (!Array.isArray(caps)) continue;
      const key = raw.replace(/^\/+/, '');
      if (key.endsWith('*')) add(prefix, key.slice(0, -1), caps);
      else add(exact, key, caps);
    }
  }
  let caps = exact.get(p);
  if (caps === undefined) {
    let best = -1;
    for (const [k, v] of prefix) {
      if (p.startsWith(k) && k.length > best) {
        best = k.length;
        caps = v;
      }
    }
  }
  if (caps === undefined || caps.size === 0 || caps.has('deny')) return ['deny'];
  return [...caps].sort();
}

function newToken() {
  return 'hvs.' + randomBytes(18).toString('base64url');
}

// One double: state, tokens, request log, and the two request handlers.
function createDouble(initialState, log) {
  const initial = structuredClone(initialState);
  let state = structuredClone(initialState);
  let tokens = new Map(); // token -> { namespace, policies, accessor, expiresAt, method }
  let secretUses = new Map(); // namespace\0role_id\0secret_id -> logins so far
  let requests = [];

  function namespaceState(ns) {
    return state.namespaces[ns];
  }

  function login(ns, mount, body) {
    const nsState = namespaceState(ns);
    const approle = nsState?.approle;
    const k8s = nsState?.kubernetes;
    const rel = `auth/${mount}/login`;
    const policiesOf = (role) => ['default', ...(role.policies ?? []).filter((x) => x !== 'default')];
    let policies;
    let metadata = {};
    if (approle && (approle.mount ?? 'approle') === mount) {
      const roleId = body.role_id;
      const secretId = body.secret_id;
      if (typeof roleId !== 'string' || roleId === '') throw new VaultError(400, 'missing role_id');
      if (typeof secretId !== 'string' || secretId === '') throw new VaultError(400, 'missing secret_id');
      const role = Object.hasOwn(approle.roles, roleId) ? approle.roles[roleId] : undefined;
      if (!role || !sameSecret(role.secret_id, secretId)) throw new VaultError(400, 'invalid role or secret ID');
      const limit = role.secret_id_num_uses ?? 0;
      const useKey = `${ns}\0${roleId}\0${secretId}`;
      const used = secretUses.get(useKey) ?? 0;
      if (limit > 0 && used >= limit) throw new VaultError(400, 'invalid role or secret ID');
      secretUses.set(useKey, used + 1);
      policies = policiesOf(role);
    } else if (k8s && (k8s.mount ?? 'kubernetes') === mount) {
      const roleName = body.role;
      if (typeof roleName !== 'string' || roleName === '') throw new VaultError(400, 'missing role');
      if (typeof body.jwt !== 'string' || body.jwt === '') throw new VaultError(400, 'missing jwt');
      const role = Object.hasOwn(k8s.roles, roleName) ? k8s.roles[roleName] : undefined;
      if (!role) throw new VaultError(400, `invalid role name "${roleName}"`);
      if (!sameSecret(role.jwt, body.jwt)) throw denied();
      policies = policiesOf(role);
      metadata = { role: roleName };
    } else {
      throw noHandler(rel);
    }
    const token = newToken();
    const accessor = randomBytes(18).toString('base64url');
    tokens.set(token, { namespace: ns, policies, accessor, expiresAt: Date.now() + TOKEN_TTL_SECONDS * 1000, mount });
    return {
      status: 200,
      body: {
        request_id: randomUUID(),
        lease_id: '',
        renewable: false,
        lease_duration: 0,
        data: null,
        wrap_info: null,
        warnings: null,
        auth: {
          client_token: token,
          accessor,
          policies,
          token_policies: policies,
          metadata,
          lease_duration: TOKEN_TTL_SECONDS,
          renewable: true,
          entity_id: '',
          token_type: 'service',
          orphan: true,
          num_uses: 0,
        },
      },
    };
  }

  function transit(ns, nsState, op, key, algorithm, body) {
    const mount = nsState.transit.mount ?? 'transit';
    if (!nsState.transit.keys.includes(key)) throw new VaultError(400, 'encryption key not found');
    const data = (d) => ({ status: 200, body: { request_id: randomUUID(), lease_id: '', renewable: false, lease_duration: 0, data: d, wrap_info: null, warnings: null, auth: null } });
    if (op === 'encrypt') {
      if (body.plaintext === undefined) throw new VaultError(400, 'missing plaintext to encrypt');
      const plain = decodeBase64(body.plaintext);
      if (plain === undefined) throw new VaultError(400, 'failed to base64-decode plaintext');
      const nonce = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', transitKey(ns, mount, key, 'encrypt'), nonce);
      const sealed = Buffer.concat([nonce, c.update(plain), c.final(), c.getAuthTag()]);
      return data({ ciphertext: `vault:v1:${sealed.toString('base64')}`, key_version: 1 });
    }
    if (op === 'decrypt') {
      const ct = body.ciphertext;
      if (typeof ct !== 'string' || ct === '') throw new VaultError(400, 'missing ciphertext to decrypt');
      if (!ct.startsWith('vault:')) throw new VaultError(400, 'invalid ciphertext: no prefix');
      const m = /^vault:v(\d+):(.*)$/s.exec(ct);
      if (!m) throw new VaultError(400, 'invalid ciphertext: wrong number of fields');
      if (m[1] !== '1') throw new VaultError(400, 'invalid ciphertext: invalid key version');
      const raw = decodeBase64(m[2]);
      if (raw === undefined) throw new VaultError(400, 'invalid ciphertext: could not decode base64');
      if (raw.length < 12 + 16) throw new VaultError(400, 'invalid ciphertext: too short');
      try {
        const d = createDecipheriv('aes-256-gcm', transitKey(ns, mount, key, 'encrypt'), raw.subarray(0, 12));
        d.setAuthTag(raw.subarray(raw.length - 16));
        const plain = Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]);
        return data({ plaintext: plain.toString('base64') });
      } catch {
        throw new VaultError(400, 'invalid ciphertext: cipher: message authentication failed');
      }
    }
    // hmac
    const alg = algorithm ?? (typeof body.algorithm === 'string' ? body.algorithm : 'sha2-256');
    if (!Object.hasOwn(HMAC_ALGORITHMS, alg)) throw new VaultError(400, `unsupported algorithm ${alg}`);
    if (body.input === undefined) throw new VaultError(400, 'missing input for HMAC');
    const input = decodeBase64(body.input);
    if (input === undefined) throw new VaultError(400, 'unable to decode input as base64');
    const mac = createHmac(HMAC_ALGORITHMS[alg], transitKey(ns, mount, key, 'hmac')).update(input).digest('base64');
    return data({ hmac: `vault:v1:${mac}` });
  }

  function health(url) {
    const q = url.searchParams;
    const codeParam = (name, dflt) => {
      const v = q.get(name);
      const n = v === null ? NaN : Number.parseInt(v, 10);
      return Number.isInteger(n) && n >= 100 && n <= 599 ? n : dflt;
    };
    const initialized = state.initialized !== false;
    const sealed = state.sealed === true;
    const standby = state.standby === true;
    let status;
    if (!initialized) status = codeParam('uninitcode', 501);
    else if (sealed) status = codeParam('sealedcode', 503);
    else if (standby) status = q.get('standbyok') === 'true' ? 200 : codeParam('standbycode', 429);
    else status = codeParam('activecode', 200);
    const now = Math.floor(Date.now() / 1000);
    return {
      status,
      body: {
        initialized,
        sealed,
        standby,
        performance_standby: false,
        replication_performance_mode: 'disabled',
        replication_dr_mode: 'disabled',
        server_time_utc: now,
        version: VERSION,
        cluster_name: CLUSTER_NAME,
        cluster_id: '2f6b7c1e-5d2a-4e0b-9c1d-7a4e8b3f0d61',
      },
    };
  }

  // Returns { status, body? }; throws VaultError.
  async function route(req, url, ns, readBody) {
    const p = url.pathname;
    if (!p.startsWith('/v1/')) throw new VaultError(404);
    const rel = p.slice(4).replace(/\/+$/, '');
    const method = req.method;
    const write = method === 'PUT' || method === 'POST';
    const op = write ? 'update' : method === 'GET' || method === 'HEAD' ? 'read' : method === 'DELETE' ? 'delete' : method === 'LIST' ? 'list' : undefined;
    if (op === undefined) throw new VaultError(405, 'unsupported operation');

    if (rel === 'sys/health') {
      if (op !== 'read') throw new VaultError(405, 'unsupported operation');
      return health(url);
    }
    if (state.initialized === false || state.sealed === true) throw new VaultError(503, 'Vault is sealed');

    const body = write ? await readBody() : {};
    const loginMatch = /^auth\/(.+)\/login$/.exec(rel);
    if (loginMatch && loginMatch[1] !== 'token') {
      if (!write) throw new VaultError(405, 'unsupported operation');
      return login(ns, loginMatch[1], body);
    }

    // Everything else needs a live token issued in this namespace.
    let token = req.headers['x-vault-token'];
    if (token === undefined && typeof req.headers.authorization === 'string') {
      const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization);
      if (m) token = m[1];
    }
    const entry = typeof token === 'string' ? tokens.get(token) : undefined;
    if (entry && entry.expiresAt <= Date.now()) tokens.delete(token);
    if (!entry || entry.expiresAt <= Date.now() || entry.namespace !== ns) throw denied();
    const nsState = namespaceState(ns);
    const caps = (x) => capabilitiesOf(entry.policies, nsState, x);
    const allowed = (x, needed) => {
      const c = caps(x);
      return c.includes('root') || c.includes(needed);
    };

    if (rel === 'sys/capabilities-self' && write) {
      if (!allowed(rel, 'update')) throw denied();
      let paths = body.paths ?? body.path;
      if (typeof paths === 'string') paths = [paths];
      if (!isStringArray(paths) || paths.length === 0) throw new VaultError(400, "'path' or 'paths' must be specified");
      const out = {};
      for (const x of paths) out[x] = caps(x.replace(/^\/+/, ''));
      // As Vault does: `capabilities` only for a single path (kept for old clients).
      if (paths.length === 1) out.capabilities = out[paths[0]];
      return { status: 200, body: { ...out, request_id: randomUUID(), lease_id: '', renewable: false, lease_duration: 0, data: { ...out }, wrap_info: null, warnings: null, auth: null } };
    }
    if (rel === 'auth/token/revoke-self' && write) {
      if (!allowed(rel, 'update')) throw denied();
      tokens.delete(token);
      return { status: 204 };
    }
    if (rel === 'auth/token/lookup-self' && op === 'read') {
      if (!allowed(rel, 'read')) throw denied();
      const ttl = Math.max(0, Math.round((entry.expiresAt - Date.now()) / 1000));
      return {
        status: 200,
        body: {
          request_id: randomUUID(), lease_id: '', renewable: false, lease_duration: 0, wrap_info: null, warnings: null, auth: null,
          data: { accessor: entry.accessor, policies: entry.policies, ttl, creation_ttl: TOKEN_TTL_SECONDS, renewable: true, type: 'service', orphan: true, namespace_path: ns === '' ? '' : `${ns}/`, display_name: entry.mount },
        },
      };
    }

    // The ACL is checked before routing, as in Vault.
    if (!allowed(rel, op)) throw denied();
    if (nsState?.transit && write) {
      const mount = nsState.transit.mount ?? 'transit';
      if (rel.startsWith(`${mount}/`)) {
        const parts = rel.slice(mount.length + 1).split('/');
        const [what, key, alg, ...rest] = parts;
        if ((what === 'encrypt' || what === 'decrypt') && key && alg === undefined) return transit(ns, nsState, what, key, undefined, body);
        if (what === 'hmac' && key && rest.length === 0) return transit(ns, nsState, what, key, alg, body);
      }
    }
    throw noHandler(rel);
  }

  function readJson(req) {
    return new Promise((resolve, reject) => {
      const chunks = [];
      let size = 0;
      req.on('data', (c) => {
        size += c.length;
        if (size > MAX_BODY_BYTES) {
          reject(new VaultError(413, 'request body too large'));
          req.destroy();
          return;
        }
        chunks.push(c);
      });
      req.on('error', () => reject(new VaultError(400, 'failed to read request body')));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (text.trim() === '') return resolve({});
        let v;
        try {
          v = JSON.parse(text);
        } catch (e) {
          return reject(new VaultError(400, `failed to parse JSON input: ${jsonProblem(e)}`));
        }
        resolve(isMap(v) ? v : {});
      });
    });
  }

  function send(res, method, status, body) {
    if (body === undefined || status === 204) {
      res.writeHead(status, { 'Cache-Control': 'no-store', 'Content-Length': 0 });
      res.end();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(text) });
    res.end(method === 'HEAD' ? undefined : text);
  }

  async function handleVault(req, res) {
    const url = new URL(req.url ?? '/', 'http://vault-double');
    const ns = normalizeNamespace(req.headers['x-vault-namespace']);
    let status;
    let body;
    try {
      const r = await route(req, url, ns, () => readJson(req));
      status = r.status;
      body = r.body;
    } catch (e) {
      if (e instanceof VaultError) {
        status = e.status;
        body = { errors: e.errors };
      } else {
        status = 500;
        body = { errors: ['internal error in vault-double'] };
        log?.(`vault-double: internal error: ${e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : String(e)}`);
      }
    }
    requests.push({ method: req.method, path: url.pathname, namespace: ns, status, agent: String(req.headers['user-agent'] ?? '') });
    log?.(`vault-double: ${req.method} ${url.pathname} ns=${JSON.stringify(ns)} -> ${status}`);
    send(res, req.method, status, body);
    // Drain an unread body so keep-alive connections stay usable.
    req.resume();
  }

  async function handleAdmin(req, res) {
    const url = new URL(req.url ?? '/', 'http://vault-double-admin');
    const json = (status, v) => {
      const text = JSON.stringify(v, null, 2) + '\n';
      res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
    };
    const empty = () => {
      res.writeHead(204);
      res.end();
    };
    const route = `${req.method} ${url.pathname.replace(/\/+$/, '') || '/'}`;
    try {
      switch (route) {
        case 'GET /state':
          return json(200, state);
        case 'PUT /state':
        case 'POST /state': {
          let next;
          try {
            next = validateState(await readJson(req));
          } catch (e) {
            if (e instanceof StateError) return json(400, { error: e.message });
            if (e instanceof VaultError) return json(e.status, { error: e.errors[0] });
            throw e;
          }
          state = structuredClone(next);
          secretUses = new Map();
          return empty();
        }
        case 'POST /reset':
          state = structuredClone(initial);
          tokens = new Map();
          secretUses = new Map();
          requests = [];
          return empty();
        case 'GET /requests':
          return json(200, requests);
        case 'DELETE /requests':
          requests = [];
          return empty();
        default:
          return json(404, { error: `no such admin endpoint: ${route}; have GET/PUT /state, POST /reset, GET/DELETE /requests` });
      }
    } catch (e) {
      return json(500, { error: 'internal error in vault-double' });
    }
  }

  return { handleVault, handleAdmin };
}

// ---------------------------------------------------------------- servers

function listen(server, port) {
  return new Promise((resolve, reject) => {
    const onError = (e) => {
      server.off('listening', onListening);
      reject(e.code === 'EADDRINUSE' ? new Error(`127.0.0.1:${port} is already in use`) : e);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve(server.address().port);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, '127.0.0.1');
  });
}

function closeServer(server) {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections?.();
  });
}

/**
 * Starts a double on 127.0.0.1. config: a state object or the path of a JSON
 * file. Port 0 picks a free port; the returned URLs carry the real ones.
 */
export async function startVaultDouble({ config, port = 0, adminPort = 0, tlsDir, log } = {}) {
  const initial = typeof config === 'string' ? loadStateFile(config) : validateState(structuredClone(config));
  const logFn = typeof log === 'function' ? log : undefined;
  const double = createDouble(initial, logFn);
  const handler = (req, res) => {
    double.handleVault(req, res).catch(() => res.destroy());
  };
  let vault;
  if (tlsDir) {
    let cert;
    let key;
    try {
      cert = readFileSync(path.join(tlsDir, 'server.pem'));
      key = readFileSync(path.join(tlsDir, 'server-key.pem'));
    } catch (e) {
      throw new Error(`cannot read ${path.join(tlsDir, 'server.pem')} and server-key.pem: ${e.code || e.message}`);
    }
    vault = https.createServer({ cert, key }, handler);
  } else {
    vault = http.createServer(handler);
  }
  const admin = http.createServer((req, res) => {
    double.handleAdmin(req, res).catch(() => res.destroy());
  });
  const vaultPort = await listen(vault, port);
  let realAdminPort;
  try {
    realAdminPort = await listen(admin, adminPort);
  } catch (e) {
    await closeServer(vault);
    throw e;
  }
  let closed;
  return {
    url: `${tlsDir ? 'https' : 'http'}://127.0.0.1:${vaultPort}`,
    adminUrl: `http://127.0.0.1:${realAdminPort}`,
    close() {
      closed ??= Promise.all([closeServer(vault), closeServer(admin)]).then(() => undefined);
      return closed;
    },
  };
}

// ---------------------------------------------------------------- CLI

const USAGE = 'usage: node vault-double.mjs --config FILE [--port 8200] [--admin-port 8201] [--tls-dir DIR]';

function parseCliArgs(argv) {
  const opts = { config: undefined, port: 8200, adminPort: 8201, tlsDir: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const value = () => {
      if (eq > 0 && a.startsWith('--')) return a.slice(eq + 1);
      if (i + 1 >= argv.length) throw new Error(`${flag} needs a value`);
      return argv[++i];
    };
    const portValue = () => {
      const v = value();
      const n = Number(v);
      if (!/^\d+$/.test(v) || n > 65535) throw new Error(`${flag}: not a port number: ${v}`);
      return n;
    };
    if (flag === '--config') opts.config = value();
    else if (flag === '--port') opts.port = portValue();
    else if (flag === '--admin-port') opts.adminPort = portValue();
    else if (flag === '--tls-dir') opts.tlsDir = value();
    else if (flag === '-h' || flag === '--help') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    } else throw new Error(`unknown argument: ${a}`);
  }
  if (opts.config === undefined) throw new Error('--config FILE is required');
  return opts;
}

async function cli() {
  let opts;
  try {
    opts = parseCliArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`vault-double: error: ${e.message}\n${USAGE}\n`);
    process.exit(2);
  }
  let double;
  try {
    double = await startVaultDouble({ ...opts, log: (line) => process.stderr.write(line + '\n') });
  } catch (e) {
    process.stderr.write(`vault-double: error: ${e.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`vault-double: listening on ${double.url} (admin ${double.adminUrl})\n`);
  const stop = () => {
    double.close().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

const invokedAs = process.argv[1] ? (() => {
  try {
    return realpathSync(process.argv[1]);
  } catch {
    return process.argv[1];
  }
})() : undefined;
if (invokedAs === fileURLToPath(import.meta.url)) cli();
