// Simulated MinIO KMS server for rollout's local lab. Plain Node ESM, no
// TypeScript, no dependencies except `yaml`, loaded from an absolute
// directory (inside a lab node: /opt/lab-yaml, bind-mounted from the repo's
// node_modules/yaml).
//
// Usage (as minkms.service runs it):
//   minkms server VOLUME [--host HOST:PORT] [--config PATH]
// Cluster administration (as the MinKMS CLI; SysAdmin, i.e. the admin API key):
//   minkms stat   [-a|--api-key KEY] [-k|--insecure] [--json]
//   minkms ls     [-a|--api-key KEY] [-k|--insecure] [--json]
//   minkms backup [-a|--api-key KEY] [-k|--insecure] [FILE]
//
// Environment:
//   MINIO_KMS_HSM_KEY   local HSM key, hsm:aes256:<base64>
//   MINIO_KMS_SERVER    (CLI) server URL, default https://localhost:7373
//   MINIO_KMS_API_KEY   (CLI) API key k1:..., unless -a gives one
//   SSL_CERT_FILE, SSL_CERT_DIR  (CLI) trust, as Go reads them
//   LAB_KNOBS_DIR       knobs dir (default /var/lib/lab-knobs)
//   LAB_YAML_DIR        dir of the yaml package (default /opt/lab-yaml)
//
// Quick check on the host:
//   LAB_KNOBS_DIR=/tmp/knobs LAB_YAML_DIR=node_modules/yaml \
//   MINIO_KMS_HSM_KEY=hsm:aes256:AAAA node lab/minkms-sim.mjs server /tmp/v --config cfg.yaml
//
// Knobs (files in the knobs dir, read fresh at every start):
//   start-delay-ms        delay before the ready line (default 300)
//   fail-start            log its content, exit 1 (before reading the config)
//   reject-vault          with a Vault HSM section in the config: log its
//                         content, exit 1 before contacting Vault; a config
//                         without Vault is unaffected
//   reject-vault-secret   with a Vault HSM section whose approle.secret equals
//                         its content: exit 1 as Vault's "invalid role or
//                         secret ID" (one node refusing one credential)
//   no-ready              start and stay up, never print the ready line
//   ignore-sigterm        ignore SIGTERM (a restart then blocks)
//   crash-after-ready-ms  exit 1 that many ms after the ready line
//   ready-503             print the ready line, but /v1/health/ready (and
//                         ?write) answer 503
//   no-https              do not listen at all (the ready line still comes)
//   drop-membership       this node has left the cluster: peers leave it out
//                         of their /v1/cluster/status (neither up nor down),
//                         and its own status shows a single-node cluster of
//                         itself; its ?write asks no peer either
//   backup-fail           GET /v1/cluster/backup answers 500 with the knob's
//                         content (default "backup failed: simulated (lab
//                         knob backup-fail)") as message
//   api-log               a lab instrument, not MinKMS behaviour: the sim
//                         appends `CONN USER-AGENT PATH` to VOLUME/.lab-api-log
//                         for every API request; CONN is PID.N, the Nth TLS
//                         connection this process accepted; `-` for no
//                         User-Agent; PATH with its query
//
// HTTPS API, as MinKMS serves it: on the address and port of --host (default
// HOSTNAME:7373) with the config's tls.certs[0] key and cert, from before the
// Vault unseal until the process ends; the ready line waits for the listener,
// which is up long before the start delay ends. GET /version (200,
// {"version"}), /v1/health/live (200), /v1/health/ready (200 once the ready
// line is out, else 503 {"message"}; with ?write also every other member of
// the cluster must answer /v1/health/live within 1 s), anything else 404
// {"message"}. The members are HOST:PORT lines in VOLUME/.lab-cluster (the
// lab writes it; absent: a single-node cluster); peers are asked over HTTPS
// trusting tls.ca (a PEM file, or a dir of them), else the system bundle.
// No tls section, a key or cert it cannot read, a --host that is not
// HOST[:PORT], or a port in use: a `Warning: HTTPS API not served: ...` line,
// and the sim runs on without an API (readiness checks then get no answer),
// so a node seeded before the lab made TLS files still starts and unseals.
//
// Cluster administration, needing `Authorization: Bearer <admin API key>`
// whose h1: identity (the sim's stand-in: h1: + base64url, no padding, of
// sha256 of the key string) is the config's admin.identity; else 401
// {"message":"not authorized: invalid API key"} (400 "invalid API key
// format" for a key not starting with k1:):
//   GET /v1/cluster/status  minio/kms-go's StatusResponse as JSON, seen from
//     this node: {"nodes_up": {ID: {version, address, state, commit, nodes,
//     node_id, leader_id, sys_uptime}}, "nodes_down": {ID: address}}. IDs are
//     0-based line indexes of VOLUME/.lab-cluster. A member is up when it
//     answers GET /v1/lab/node (unauthenticated, lab-internal: {address,
//     version, started_ms, member, ready}) within 1 s; one answering
//     member:false is left out. The leader is the ready up member started
//     first (ties: lowest ID), so, as with Raft, a restarted node does not
//     take leadership back and a stopped leader's role passes to the oldest
//     survivor; leader_id -1 when no member is ready.
//   GET /v1/cluster/backup  a gzip of a JSON snapshot (cluster id, members,
//     version, time), application/octet-stream.
// The CLI commands ask MINIO_KMS_SERVER for these (10 s timeout) and print
// the JSON (--json, one line) or a table, or write the backup (FILE, default
// YYYYMMDD_HHMMSS_kms.db.gzip; 0600, temp file + rename) and print its name.
// Failures: one `Error: ...` line on stderr (the server's message, or Go-like
// network and x509 errors), exit 1.
//
// With a Vault HSM section (hsm.vault or hsm.hashicorp.vault) the sim talks
// to that Vault for real before its banner, as MinKMS would: AppRole or
// Kubernetes login, an HMAC with the transit key, then it decrypts the sealed
// root encryption key in VOLUME/.vault-sealed-rek (creating it on first use:
// a random 32-byte REK, encrypted, written 0600, decrypted back). TLS trust is
// the system bundle (SSL_CERT_FILE, else /etc/ssl/certs/ca-certificates.crt),
// 10 s timeout per request. Any failure: Go-Vault-client-like lines on
// stderr, exit 1.
//
// Secrets (Vault secret/JWT, tokens, the REK, HSM key, the admin API key)
// are never printed; the banner's API Key is a random one of its own.

import { createRequire } from 'node:module';
import {
  appendFileSync, closeSync, existsSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, statSync,
  unlinkSync, writeFileSync, writeSync,
} from 'node:fs';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import https from 'node:https';
import { hostname } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';

const KNOBS_DIR = process.env.LAB_KNOBS_DIR || '/var/lib/lab-knobs';
const YAML_DIR = path.resolve(process.env.LAB_YAML_DIR || '/opt/lab-yaml');
const DEFAULT_CONFIG = '/etc/minkms/config.yaml';
const RELEASE = '2025-03-12T09-35-18Z';
const VERSION = `${RELEASE} (go1.24.1 linux/amd64)`;
const DOCS = 'https://min.io/docs/kms';
const DEFAULT_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';
const CA_BUNDLE = process.env.SSL_CERT_FILE || DEFAULT_CA_BUNDLE;
const VAULT_TIMEOUT_MS = 10_000;
const SEALED_REK_FILE = '.vault-sealed-rek';
const CLUSTER_FILE = '.lab-cluster';
const DEFAULT_PORT = 7373;
const PEER_TIMEOUT_MS = 1000;
const CLI_TIMEOUT_MS = 10_000;
const DEFAULT_SERVER = 'https://localhost:7373';
// The input of the start-up HMAC that proves the token may use the key.
const HMAC_CHECK_INPUT = Buffer.from('minkms: vault hsm check').toString('base64');

const BOLD = '\x1b[1m';
const GREEN = '\x1b[32m';
const RESET = '\x1b[0m';

// One write per line; writes to files, pipes and the journald stream socket
// are synchronous on Linux, so each line is flushed before the next step.
function out(line) {
  process.stdout.write(line + '\n');
}
function err(line) {
  process.stderr.write(line + '\n');
}
function die(line, code = 1) {
  for (const l of String(line).split('\n')) if (l.trim() !== '') err(l.replace(/\s+$/, ''));
  process.exit(code);
}

function readKnob(name) {
  const p = path.join(KNOBS_DIR, name);
  try {
    return readFileSync(p, 'utf8');
  } catch (e) {
    if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return undefined;
    throw e;
  }
}
function knobNumber(name, dflt) {
  const v = readKnob(name);
  if (v === undefined) return dflt;
  const n = Number.parseInt(v.trim(), 10);
  return Number.isFinite(n) && n >= 0 ? n : dflt;
}
function knobMessage(name, dflt) {
  const v = readKnob(name);
  if (v === undefined) return undefined;
  const t = v.trim();
  return t === '' ? dflt : t;
}

function parseArgs(argv) {
  if (argv[0] !== 'server') {
    die(['Usage: minkms server VOLUME [--host HOST:PORT] [--config PATH]', ...Object.values(CLI_USAGE)].join('\n'), 2);
  }
  const opts = { volume: undefined, host: undefined, config: DEFAULT_CONFIG };
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const inline = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : undefined;
    const value = () => {
      if (inline !== undefined) return inline;
      if (i + 1 >= argv.length) die(`Error: flag needs an argument: ${flag}`, 2);
      return argv[++i];
    };
    if (flag === '--host') opts.host = value();
    else if (flag === '--config') opts.config = value();
    else if (a.startsWith('-')) die(`Error: unknown flag: ${flag}`, 2);
    else if (opts.volume === undefined) opts.volume = a;
    else die(`Error: unexpected argument: ${a}`, 2);
  }
  if (opts.volume === undefined) die('Error: no volume specified\nUsage: minkms server VOLUME [--host HOST:PORT] [--config PATH]', 2);
  return opts;
}

function loadYaml() {
  const require = createRequire(import.meta.url);
  return require(YAML_DIR);
}

// Only the first line of a parser message: the yaml library appends a
// snippet of the offending source line, which may hold a secret.
function firstLine(msg) {
  return String(msg).split('\n')[0].replace(/:\s*$/, '').trim();
}

function readConfig(file) {
  const fail = (reason) => die(`Error: failed to read config file "${file}": ${reason}`);
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e.code === 'ENOENT') fail(`open ${file}: no such file or directory`);
    if (e.code === 'EACCES') fail(`open ${file}: permission denied`);
    if (e.code === 'EISDIR') fail(`read ${file}: is a directory`);
    fail(firstLine(e.message));
  }
  const YAML = loadYaml();
  let doc;
  try {
    doc = YAML.parseDocument(text, { uniqueKeys: true });
  } catch (e) {
    fail(firstLine(e.message));
  }
  if (doc.errors && doc.errors.length > 0) fail(firstLine(doc.errors[0].message));
  let cfg;
  try {
    cfg = doc.toJS();
  } catch (e) {
    fail(firstLine(e.message));
  }
  if (cfg === null || typeof cfg !== 'object' || Array.isArray(cfg)) {
    fail('invalid config: not a YAML mapping');
  }
  if (cfg.version === undefined) fail('invalid config: missing "version" (want v1)');
  if (cfg.version !== 'v1') fail(`invalid config: unsupported version "${String(cfg.version)}" (want v1)`);
  return cfg;
}

const isMap = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const nonEmpty = (v) => typeof v === 'string' && v.trim() !== '';

// Returns undefined (no Vault section), or { path, section }.
function findVault(cfg) {
  const hsm = cfg.hsm;
  if (!isMap(hsm)) return undefined;
  if (hsm.vault !== undefined) return { path: 'hsm.vault', section: hsm.vault };
  if (isMap(hsm.hashicorp) && hsm.hashicorp.vault !== undefined) {
    return { path: 'hsm.hashicorp.vault', section: hsm.hashicorp.vault };
  }
  return undefined;
}

// Returns an error text (never containing values) or undefined when valid.
function validateVault({ path: p, section: v }) {
  if (!isMap(v)) return `${p}: not a mapping`;
  if (!nonEmpty(v.server)) return `${p}.server: missing`;
  let url;
  try {
    url = new URL(v.server);
  } catch {
    return `${p}.server: not a valid URL`;
  }
  if (url.protocol !== 'https:') return `${p}.server: must be an https:// URL`;
  if (!isMap(v.transit) || !nonEmpty(v.transit.key)) return `${p}.transit.key: missing`;
  const approle = isMap(v.approle) && nonEmpty(v.approle.id) && nonEmpty(v.approle.secret);
  const k8s = isMap(v.kubernetes) && nonEmpty(v.kubernetes.role) && nonEmpty(v.kubernetes.jwt);
  if (!approle && !k8s) {
    if (v.approle !== undefined) return `${p}.approle: both id and secret are required`;
    if (v.kubernetes !== undefined) return `${p}.kubernetes: both role and jwt are required`;
    return `${p}: no authentication method: set approle.id and approle.secret, or kubernetes.role and kubernetes.jwt`;
  }
  return undefined;
}

// ---------------------------------------------------------------- Vault

// A failed Vault API call, rendered like Go's vault/api ResponseError.
class VaultApiError extends Error {
  constructor(method, url, namespace, status, errors, raw) {
    super('Error making API request.');
    this.lines = [
      'Error making API request.',
      ...(namespace ? [`Namespace: ${namespace}`] : []),
      `URL: ${method} ${url}`,
      ...(errors !== undefined
        ? [`Code: ${status}. Errors:`, ...errors.map((e) => `* ${e}`)]
        : [`Code: ${status}. Raw Message:`, ...(raw ? [raw.slice(0, 300)] : [])]),
    ];
  }
}

// Could not talk to Vault at all (DNS, TCP, TLS, timeout), worded like Go's net/http.
class VaultNetError extends Error {
  constructor(method, url, text) {
    super(text);
    this.method = method;
    this.url = url;
  }
}

function goNetError(e, url) {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = u.port || '443';
  // Node 20 tries every address of a name (autoSelectFamily): report the first.
  const first = Array.isArray(e?.errors) && e.errors.length > 0 ? e.errors[0] : e;
  const code = first?.code ?? e?.code;
  const addr = first?.address ? `${first.address.includes(':') ? `[${first.address}]` : first.address}:${first.port ?? port}` : `${host}:${port}`;
  switch (code) {
    case 'ECONNREFUSED':
      return `dial tcp ${addr}: connect: connection refused`;
    case 'ENOTFOUND':
      return `dial tcp: lookup ${host}: no such host`;
    case 'EAI_AGAIN':
      return `dial tcp: lookup ${host}: Temporary failure in name resolution`;
    case 'EHOSTUNREACH':
      return `dial tcp ${addr}: connect: no route to host`;
    case 'ENETUNREACH':
      return `dial tcp ${addr}: connect: network is unreachable`;
    case 'ECONNRESET':
      return `read tcp ${addr}: read: connection reset by peer`;
    case 'TIMEOUT':
      return 'context deadline exceeded (Client.Timeout exceeded while awaiting headers)';
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return 'tls: failed to verify certificate: x509: certificate signed by unknown authority';
    case 'CERT_HAS_EXPIRED':
    case 'CERT_NOT_YET_VALID':
      return 'tls: failed to verify certificate: x509: certificate has expired or is not yet valid';
    case 'ERR_TLS_CERT_ALTNAME_INVALID': {
      const names = String(first?.cert?.subjectaltname ?? '')
        .split(/,\s*/)
        .map((n) => n.replace(/^(DNS|IP Address):/, ''))
        .filter(Boolean);
      return `tls: failed to verify certificate: x509: certificate is valid for ${names.join(', ') || 'other names'}, not ${host}`;
    }
    case 'EPROTO':
    case 'ERR_SSL_WRONG_VERSION_NUMBER':
      return 'http: server gave HTTP response to HTTPS client';
    default:
      return `${String(code ?? 'error').toLowerCase()}: ${firstLine(first?.message ?? e)}`;
  }
}

function readCaBundle() {
  try {
    return readFileSync(CA_BUNDLE, 'utf8');
  } catch {
    // No system roots: Go then trusts nothing either.
    return undefined;
  }
}

// One Vault API call (Go's client writes with PUT). Resolves with the parsed
// body; rejects with VaultApiError or VaultNetError. Never logs anything.
function vaultRequest({ server, ca, method, apiPath, body, headers }) {
  const url = `${server.replace(/\/+$/, '')}/v1/${apiPath}`;
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (fn, v) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn(v);
    };
    const req = https.request(url, {
      method,
      // An empty CA list when there is no bundle: verification then fails, as in Go.
      ca: ca ?? [],
      headers: {
        'Content-Type': 'application/json',
        ...(payload !== undefined ? { 'Content-Length': Buffer.byteLength(payload) } : {}),
        ...headers,
      },
    });
    const timer = setTimeout(() => {
      const e = new Error('timeout');
      e.code = 'TIMEOUT';
      req.destroy(e);
    }, VAULT_TIMEOUT_MS);
    req.on('error', (e) => done(reject, new VaultNetError(method, url, goNetError(e, url))));
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', (e) => done(reject, new VaultNetError(method, url, goNetError(e, url))));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed;
        try {
          parsed = text.trim() === '' ? undefined : JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        const status = res.statusCode ?? 0;
        if (status >= 400) {
          const errors = Array.isArray(parsed?.errors) ? parsed.errors.map(String) : undefined;
          done(reject, new VaultApiError(method, url, headers['X-Vault-Namespace'], status, errors, errors ? '' : firstLine(text)));
          return;
        }
        done(resolve, parsed);
      });
    });
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

class UnsealError extends Error {}

// Logs in, proves the key works, and unseals (or first seals) the REK, as
// MinKMS does with a Vault HSM. Throws VaultApiError, VaultNetError or
// UnsealError; none of their texts holds a secret.
async function openVaultHsm(v, volume) {
  const server = v.server;
  const ca = readCaBundle();
  const nsHeader = (ns) => (nonEmpty(ns) ? { 'X-Vault-Namespace': ns } : {});
  const mountOf = (block, dflt) => (nonEmpty(block.path) ? block.path : nonEmpty(block.engine) ? block.engine : dflt).replace(/^\/+|\/+$/g, '');

  const useApprole = isMap(v.approle) && nonEmpty(v.approle.id) && nonEmpty(v.approle.secret);
  let login;
  if (useApprole) {
    login = await vaultRequest({
      server, ca, method: 'PUT',
      apiPath: `auth/${mountOf(v.approle, 'approle')}/login`,
      body: { role_id: v.approle.id, secret_id: v.approle.secret },
      headers: nsHeader(v.approle.namespace),
    });
  } else {
    let jwt = v.kubernetes.jwt;
    if (jwt.startsWith('/')) {
      try {
        jwt = readFileSync(jwt, 'utf8').trim();
      } catch (e) {
        const why = e.code === 'ENOENT' ? 'no such file or directory' : e.code === 'EACCES' ? 'permission denied' : e.code || 'error';
        throw new UnsealError(`failed to read the Kubernetes service account token: open ${v.kubernetes.jwt}: ${why}`);
      }
    }
    login = await vaultRequest({
      server, ca, method: 'PUT',
      apiPath: `auth/${mountOf(v.kubernetes, 'kubernetes')}/login`,
      body: { role: v.kubernetes.role, jwt },
      headers: nsHeader(v.kubernetes.namespace),
    });
  }
  const token = login?.auth?.client_token;
  if (!nonEmpty(token)) throw new UnsealError('vault: login response carries no client token');

  const key = v.transit.key;
  const mount = mountOf(v.transit, 'transit');
  const transit = (op, body) =>
    vaultRequest({
      server, ca, method: 'PUT',
      apiPath: `${mount}/${op}/${key}`,
      body,
      headers: { 'X-Vault-Token': token, ...nsHeader(v.transit.namespace) },
    });

  const mac = await transit('hmac', { input: HMAC_CHECK_INPUT });
  if (!nonEmpty(mac?.data?.hmac)) throw new UnsealError('vault: HMAC response carries no hmac');

  const decrypt = async (ciphertext) => {
    const r = await transit('decrypt', { ciphertext });
    const plain = r?.data?.plaintext;
    if (typeof plain !== 'string') throw new UnsealError('vault: decrypt response carries no plaintext');
    return Buffer.from(plain, 'base64');
  };

  const file = path.join(volume, SEALED_REK_FILE);
  if (existsSync(file)) {
    let sealed;
    try {
      sealed = readFileSync(file, 'utf8').trim();
    } catch (e) {
      throw new UnsealError(`failed to read the sealed root encryption key: open ${file}: ${e.code === 'EACCES' ? 'permission denied' : e.code || 'error'}`);
    }
    const rek = await decrypt(sealed);
    if (rek.length !== 32) throw new UnsealError('invalid root encryption key: not 32 bytes');
    return;
  }
  const rek = randomBytes(32);
  const enc = await transit('encrypt', { plaintext: rek.toString('base64') });
  const ciphertext = enc?.data?.ciphertext;
  if (!nonEmpty(ciphertext)) throw new UnsealError('vault: encrypt response carries no ciphertext');
  try {
    mkdirSync(volume, { recursive: true, mode: 0o700 });
    const tmp = `${file}.tmp-${process.pid}`;
    writeFileSync(tmp, ciphertext + '\n', { mode: 0o600 });
    renameSync(tmp, file);
  } catch (e) {
    throw new UnsealError(`failed to write the sealed root encryption key: ${e.code === 'EACCES' ? `open ${file}: permission denied` : e.code || 'error'}`);
  }
  if (!(await decrypt(ciphertext)).equals(rek)) throw new UnsealError('vault: decrypted root encryption key does not match');
}

// The lines MinKMS would log for a failed Vault HSM (Go error style).
function vaultFailureLines(e) {
  if (e instanceof VaultApiError) {
    const [head, ...rest] = e.lines;
    return [`Error: failed to unseal the root encryption key: ${head}`, ...rest];
  }
  if (e instanceof VaultNetError) {
    return [`Error: failed to connect to Vault: ${e.message}`, `URL: ${e.method} ${e.url}`];
  }
  if (e instanceof UnsealError) return [`Error: failed to unseal the root encryption key: ${e.message}`];
  return [`Error: failed to unseal the root encryption key: ${firstLine(e?.message ?? e)}`];
}

// ---------------------------------------------------------------- HTTPS API

// HOST:PORT -> { host, port } (IPv6 literals in brackets; port 7373 when
// none), or undefined when it is not that shape.
function splitHostPort(hp) {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+))(?::(\d{1,5}))?$/.exec(hp);
  if (!m) return undefined;
  return { host: m[1] ?? m[2], port: m[3] === undefined ? DEFAULT_PORT : Number(m[3]) };
}

// Why the API cannot be served (the sim runs on without it).
class ApiProblem extends Error {}

function readTlsFile(what, file) {
  try {
    return readFileSync(file);
  } catch (e) {
    const why = e.code === 'ENOENT' ? 'no such file or directory' : e.code === 'EACCES' ? 'permission denied' : e.code || 'error';
    throw new ApiProblem(`failed to load TLS ${what}: open ${file}: ${why}`);
  }
}

// The config's tls section as { key, cert, ca } (ca: undefined or a path).
// Throws ApiProblem when there is none or it cannot be used.
function loadTls(cfg) {
  const tls = cfg.tls;
  if (tls === undefined || tls === null) throw new ApiProblem('no tls section in the config');
  const first = isMap(tls) && Array.isArray(tls.certs) ? tls.certs[0] : undefined;
  if (!isMap(first) || !nonEmpty(first.key) || !nonEmpty(first.cert)) throw new ApiProblem('tls.certs[0] needs key and cert');
  if (tls.ca !== undefined && tls.ca !== null && !nonEmpty(tls.ca)) throw new ApiProblem('tls.ca: not a path');
  return { key: readTlsFile('private key', first.key), cert: readTlsFile('certificate', first.cert), ca: tls.ca ?? undefined };
}

function apiNotServed(reason) {
  err(`Warning: HTTPS API not served: ${reason}`);
}

// The PEM texts of every file in dir that holds a certificate (symlinks
// followed, as OpenSSL's hashed dirs have them); [] when unreadable.
function readPemDir(dir) {
  try {
    return readdirSync(dir)
      .map((f) => path.join(dir, f))
      .filter((f) => statSync(f, { throwIfNoEntry: false })?.isFile())
      .map((f) => readFileSync(f, 'utf8'))
      .filter((t) => t.includes('-----BEGIN CERTIFICATE-----'));
  } catch {
    return [];
  }
}

// The PEM text(s) to trust when asking peers: tls.ca (a file, or every file
// of a dir), else the system bundle.
function peerTrust(ca) {
  if (ca === undefined) return readCaBundle() ?? [];
  try {
    if (!statSync(ca).isDirectory()) return [readFileSync(ca, 'utf8')];
  } catch {
    return [];
  }
  return readPemDir(ca);
}

// The cluster's members (HOST:PORT) in VOLUME/.lab-cluster's order, their
// index being their node ID; undefined when there is no such file.
function readMembers(volume) {
  let text;
  try {
    text = readFileSync(path.join(volume, CLUSTER_FILE), 'utf8');
  } catch {
    return undefined;
  }
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
}

// The other members of the cluster (HOST:PORT), from VOLUME/.lab-cluster.
function readPeers(volume, self) {
  return (readMembers(volume) ?? []).filter((l) => l !== self);
}

// Resolves true when https://PEER/v1/health/live answers 200 within PEER_TIMEOUT_MS.
function peerLive(peer, ca) {
  const hp = splitHostPort(peer);
  if (hp === undefined) return Promise.resolve(false);
  const { host, port } = hp;
  return new Promise((resolve) => {
    const req = https.get({ host, port, path: '/v1/health/live', ca, servername: host, timeout: PEER_TIMEOUT_MS }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(false));
  });
}

// ---------------------------------------------------------------- cluster administration

const NOT_AUTHORIZED = 'not authorized: invalid API key';

// The sim's stand-in for an API key's identity: h1: + base64url (no padding)
// of sha256 of the key string. (MinKMS hashes the key's Ed25519 public key;
// the lab only needs config and key to match, and lab.sh computes this one
// with openssl alone.)
function apiKeyIdentity(key) {
  return 'h1:' + createHash('sha256').update(key, 'utf8').digest('base64url');
}

// Undefined when the request carries the admin API key, else [status, message].
function checkAdmin(req, identity) {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? '');
  if (!m) return [401, NOT_AUTHORIZED];
  if (!m[1].startsWith('k1:')) return [400, 'invalid API key format'];
  if (!nonEmpty(identity)) return [401, NOT_AUTHORIZED];
  const got = Buffer.from(apiKeyIdentity(m[1]));
  const want = Buffer.from(identity.trim());
  return got.length === want.length && timingSafeEqual(got, want) ? undefined : [401, NOT_AUTHORIZED];
}

// The members as this node sees them: VOLUME/.lab-cluster, or itself alone
// (no such file, or it left with the drop-membership knob).
function clusterMembers(node) {
  if (node.dropMembership) return [node.self];
  return readMembers(node.volume) ?? [node.self];
}

// What GET /v1/lab/node answers: what a peer needs for its cluster status.
function nodeInfo(node, state) {
  return { address: node.self, version: RELEASE, started_ms: state.startedMs, member: !node.dropMembership, ready: state.ready };
}

// Resolves with a member's /v1/lab/node answer, or undefined when it gives
// none within PEER_TIMEOUT_MS (it is down).
function askNode(member, ca) {
  const hp = splitHostPort(member);
  if (hp === undefined) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    let timer;
    const done = (v) => {
      clearTimeout(timer);
      resolve(v);
    };
    const req = https.get({ host: hp.host, port: hp.port, path: '/v1/lab/node', ca, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', () => done(undefined));
      res.on('end', () => {
        let info;
        try {
          info = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          return done(undefined);
        }
        done(res.statusCode === 200 && isMap(info) && typeof info.started_ms === 'number' ? info : undefined);
      });
    });
    // A whole-answer deadline: `timeout` alone only bounds idle gaps.
    timer = setTimeout(() => req.destroy(new Error('timeout')), PEER_TIMEOUT_MS);
    req.on('error', () => done(undefined));
  });
}

// The cluster as this node sees it, as minio/kms-go's StatusResponse JSON.
async function clusterStatus(node, state, ca) {
  const members = clusterMembers(node);
  const infos = await Promise.all(members.map((m) => (m === node.self ? nodeInfo(node, state) : askNode(m, ca))));
  const up = [];
  const down = [];
  members.forEach((address, id) => {
    const info = infos[id];
    if (info === undefined) down.push({ id, address });
    // A member that left is no member at all; this node always counts itself.
    else if (info.member !== false || address === node.self) up.push({ id, address, info });
  });
  // Raft-like: the longest-running ready member leads.
  const leader = up
    .filter((n) => n.info.ready === true)
    .sort((a, b) => a.info.started_ms - b.info.started_ms || a.id - b.id)[0];
  const leaderId = leader === undefined ? -1 : leader.id;
  const nodes = Object.fromEntries([...up, ...down].sort((a, b) => a.id - b.id).map((n) => [String(n.id), n.address]));
  const now = Date.now();
  return {
    nodes_up: Object.fromEntries(
      up.map((n) => [
        String(n.id),
        {
          version: typeof n.info.version === 'string' ? n.info.version : RELEASE,
          address: n.address,
          state: n.id === leaderId ? 'Leader' : 'Follower',
          // The sim keeps no log: one committed entry per member joined.
          commit: Object.keys(nodes).length,
          nodes,
          node_id: n.id,
          leader_id: leaderId,
          sys_uptime: `${Math.max(0, Math.floor((now - n.info.started_ms) / 1000))}s`,
        },
      ]),
    ),
    nodes_down: Object.fromEntries(down.map((n) => [String(n.id), n.address])),
  };
}

// A gzip of a JSON snapshot of the cluster's (simulated) state.
function clusterBackup(node) {
  const snapshot = {
    cluster_id: clusterId(),
    version: RELEASE,
    node: node.self,
    time: new Date().toISOString(),
    members: Object.fromEntries(clusterMembers(node).map((m, i) => [String(i), m])),
  };
  return gzipSync(Buffer.from(JSON.stringify(snapshot) + '\n'));
}

// Starts the API server; resolves once it listens, or failed to (logged).
// `state.ready` is set when the ready line is out; `node` is what the
// cluster endpoints need (self, volume, identity, knobs).
function serveApi({ tls, host, port, state, ready503, apiLog, peers, node }) {
  const reply = (res, status, body) => {
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  };
  const denied = (req, res) => {
    const no = checkAdmin(req, node.identity);
    if (no !== undefined) reply(res, no[0], { message: no[1] });
    return no !== undefined;
  };
  // For the api-log knob: which accepted connection each request came over.
  const connections = new WeakMap();
  let accepted = 0;
  const server = https.createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://localhost');
    if (apiLog) appendFileSync(apiLog, `${connections.get(req.socket)} ${(req.headers['user-agent'] ?? '-').replace(/\s/g, '_')} ${url.pathname}${url.search}\n`);
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 404, { message: 'not found' });
    switch (url.pathname) {
      case '/version':
        return reply(res, 200, { version: VERSION });
      case '/v1/health/live':
        return reply(res, 200);
      case '/v1/health/ready': {
        if (!state.ready) return reply(res, 503, { message: 'not ready: the server is starting' });
        if (ready503) return reply(res, 503, { message: 'not ready: simulated (lab knob ready-503)' });
        if (!url.searchParams.has('write')) return reply(res, 200);
        const others = peers();
        const ca = peerTrust(tls.ca);
        void Promise.all(others.map((p) => peerLive(p, ca))).then((live) => {
          const down = others.filter((_, i) => !live[i]);
          if (down.length === 0) reply(res, 200);
          else reply(res, 503, { message: `not ready for writes: ${down.join(', ')} not reachable (write quorum is every node)` });
        });
        return;
      }
      case '/v1/lab/node':
        return reply(res, 200, nodeInfo(node, state));
      case '/v1/cluster/status':
        if (denied(req, res)) return;
        void clusterStatus(node, state, peerTrust(tls.ca)).then(
          (status) => reply(res, 200, status),
          (e) => reply(res, 500, { message: firstLine(e?.message ?? e) }),
        );
        return;
      case '/v1/cluster/backup': {
        if (denied(req, res)) return;
        if (node.backupFail !== undefined) return reply(res, 500, { message: node.backupFail });
        const gz = clusterBackup(node);
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': gz.length });
        return res.end(gz);
      }
      default:
        return reply(res, 404, { message: 'not found' });
    }
  });
  server.on('secureConnection', (socket) => connections.set(socket, `${process.pid}.${++accepted}`));
  return new Promise((resolve) => {
    server.on('error', (e) => {
      const where = `${host}:${port}`;
      const why =
        e.code === 'EADDRINUSE' ? `listen tcp ${where}: bind: address already in use`
        : e.code === 'EADDRNOTAVAIL' ? `listen tcp ${where}: bind: cannot assign requested address`
        : e.code === 'EACCES' ? `listen tcp ${where}: bind: permission denied`
        : e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN' ? `listen tcp: lookup ${host}: no such host`
        : `listen tcp ${where}: ${firstLine(e.message)}`;
      apiNotServed(why);
      resolve();
    });
    server.listen(port, host, () => resolve());
  });
}

// ---------------------------------------------------------------- CLI

const CLI_USAGE = {
  stat: 'Usage: minkms stat [-a|--api-key KEY] [-k|--insecure] [--json]',
  ls: 'Usage: minkms ls [-a|--api-key KEY] [-k|--insecure] [--json]',
  backup: 'Usage: minkms backup [-a|--api-key KEY] [-k|--insecure] [FILE]',
};

// Go's wording of a failed file operation's errno.
function errnoText(e) {
  switch (e?.code) {
    case 'ENOENT': return 'no such file or directory';
    case 'EACCES': return 'permission denied';
    case 'EISDIR': return 'is a directory';
    case 'ENOTDIR': return 'not a directory';
    case 'EROFS': return 'read-only file system';
    case 'ENOSPC': return 'no space left on device';
    default: return String(e?.code ?? 'error').toLowerCase();
  }
}

// argv after the command -> { apiKey, insecure, json, file }. Flags may come
// anywhere (as pflag takes them); no message ever echoes a value or an
// argument, since either may be a key typed in the wrong place.
function parseCliArgs(cmd, argv) {
  const usage = CLI_USAGE[cmd];
  const opts = { apiKey: undefined, insecure: false, json: false, file: undefined };
  const args = [];
  let flags = true;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!flags || a === '-' || !a.startsWith('-')) {
      args.push(a);
      continue;
    }
    if (a === '--') {
      flags = false;
      continue;
    }
    const long = a.startsWith('--');
    const eq = a.indexOf('=');
    // --flag=value, or a short flag with its value attached (-aKEY, -a=KEY).
    const flag = long ? (eq > 0 ? a.slice(0, eq) : a) : a.slice(0, 2);
    const inline = long ? (eq > 0 ? a.slice(eq + 1) : undefined) : a.length > 2 ? a.slice(2).replace(/^=/, '') : undefined;
    if (flag === '-a' || flag === '--api-key') {
      if (inline !== undefined) opts.apiKey = inline;
      else if (i + 1 < argv.length) opts.apiKey = argv[++i];
      else die(`Error: flag needs an argument: ${flag}\n${usage}`, 2);
    } else if ((flag === '-k' || flag === '--insecure') && inline === undefined) opts.insecure = true;
    else if (flag === '--json' && inline === undefined && cmd !== 'backup') opts.json = true;
    else if ((flag === '-h' || flag === '--help') && inline === undefined) {
      out(usage);
      process.exit(0);
    } else die(`Error: unknown flag: ${flag}\n${usage}`, 2);
  }
  const maxArgs = cmd === 'backup' ? 1 : 0;
  if (args.length > maxArgs) die(`Error: accepts at most ${maxArgs} arg(s), received ${args.length}\n${usage}`, 2);
  opts.file = args[0];
  return opts;
}

// The roots Go's crypto/x509 would trust on Linux: SSL_CERT_FILE (else the
// system bundle) plus every PEM in the SSL_CERT_DIR dirs (colon-separated).
function cliTrust() {
  const pems = [];
  try {
    const text = readFileSync(process.env.SSL_CERT_FILE || DEFAULT_CA_BUNDLE, 'utf8');
    if (text.includes('-----BEGIN CERTIFICATE-----')) pems.push(text);
  } catch {
    // No bundle: only the dirs, if any, are trusted (nothing at all else).
  }
  for (const dir of (process.env.SSL_CERT_DIR ?? '').split(':').filter(Boolean)) pems.push(...readPemDir(dir));
  return pems;
}

// One admin GET to the server. Resolves { status, body } for any HTTP answer;
// rejects with an Error whose message is Go's text for the network failure.
function cliRequest(url, key, { ca, insecure }) {
  return new Promise((resolve, reject) => {
    let timer;
    const fail = (e) => {
      clearTimeout(timer);
      reject(new Error(goNetError(e, url)));
    };
    const req = https.request(url, {
      method: 'GET',
      agent: false,
      // An empty list when nothing is trusted: verification then fails, as in Go.
      ca: insecure ? undefined : ca,
      rejectUnauthorized: !insecure,
      headers: { Authorization: `Bearer ${key}`, Accept: 'application/json' },
    });
    timer = setTimeout(() => {
      const e = new Error('timeout');
      e.code = 'TIMEOUT';
      req.destroy(e);
    }, CLI_TIMEOUT_MS);
    req.on('error', fail);
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', fail);
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) });
      });
    });
    req.end();
  });
}

// The server's {"message"} of an error answer, else its status line.
function httpErrorMessage(status, body) {
  try {
    const m = JSON.parse(body.toString('utf8'))?.message;
    if (nonEmpty(m)) return firstLine(m);
  } catch {
    // Not JSON: fall back to the status.
  }
  return `${status} ${STATUS_CODES[status] ?? ''}`.trim();
}

// Whole seconds as Go's time.Duration prints them (1h2m3s, 4m0s, 5s).
function goDuration(secs) {
  const s = Number.isFinite(secs) && secs > 0 ? Math.floor(secs) : 0;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h > 0) return `${h}h${m}m${s % 60}s`;
  if (m > 0) return `${m}m${s % 60}s`;
  return `${s}s`;
}

// The human view of a StatusResponse: one row per node, by ID.
function renderStatusTable(status) {
  const rows = [];
  for (const [id, n] of Object.entries(isMap(status.nodes_up) ? status.nodes_up : {})) {
    rows.push([id, String(n?.address ?? ''), 'online', String(n?.state ?? '').toLowerCase(), goDuration(Number.parseFloat(String(n?.sys_uptime ?? '0')))]);
  }
  for (const [id, address] of Object.entries(isMap(status.nodes_down) ? status.nodes_down : {})) {
    rows.push([id, String(address), 'offline', '-', '-']);
  }
  rows.sort((a, b) => Number(a[0]) - Number(b[0]));
  const table = [['ID', 'ADDRESS', 'STATUS', 'ROLE', 'UPTIME'], ...rows];
  const widths = table[0].map((_, c) => Math.max(...table.map((r) => r[c].length)));
  return table.map((r) => r.map((v, c) => v.padEnd(widths[c])).join('  ').trimEnd()).join('\n');
}

// The default backup name, in local time as Go's time.Now() formats it.
function backupFileName(d = new Date()) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}_${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}_kms.db.gzip`;
}

// Writes data to file 0600 through a temp file beside it and a rename, so
// the name never holds a partial backup. Throws an Error with Go's text.
function writeBackup(file, data) {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
  let fd;
  try {
    fd = openSync(tmp, 'wx', 0o600);
    // Exactly 0600 whatever the umask.
    fchmodSync(fd, 0o600);
    writeFileSync(fd, data);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, file);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // Never created, or already renamed.
    }
    throw new Error(`open ${file}: ${errnoText(e)}`);
  }
}

// minkms stat|ls|backup: exit 0 with the answer on stdout, or one `Error:`
// line on stderr and exit 1 (2 for usage).
async function runCli(cmd, argv) {
  const opts = parseCliArgs(cmd, argv);
  const key = (nonEmpty(opts.apiKey) ? opts.apiKey : process.env.MINIO_KMS_API_KEY ?? '').trim();
  if (key === '') die('Error: no API key: use --api-key or set MINIO_KMS_API_KEY');
  const server = process.env.MINIO_KMS_SERVER || DEFAULT_SERVER;
  let base;
  try {
    base = new URL(server);
  } catch {
    die(`Error: invalid MINIO_KMS_SERVER "${server}": not a URL`);
  }
  if (base.protocol !== 'https:') die(`Error: invalid MINIO_KMS_SERVER "${server}": not an https:// URL`);
  const apiPath = cmd === 'backup' ? '/v1/cluster/backup' : '/v1/cluster/status';
  const url = `${base.origin}${base.pathname.replace(/\/+$/, '')}${apiPath}`;

  let res;
  try {
    res = await cliRequest(url, key, { ca: opts.insecure ? undefined : cliTrust(), insecure: opts.insecure });
  } catch (e) {
    die(`Error: ${e.message}`);
  }
  if (res.status !== 200) die(`Error: ${httpErrorMessage(res.status, res.body)}`);

  if (cmd === 'backup') {
    const file = opts.file ?? backupFileName();
    try {
      writeBackup(file, res.body);
    } catch (e) {
      die(`Error: ${e.message}`);
    }
    out(file);
    return;
  }
  let status;
  try {
    status = JSON.parse(res.body.toString('utf8'));
  } catch {
    die('Error: invalid cluster status: the server did not answer JSON');
  }
  if (!isMap(status)) die('Error: invalid cluster status: not a JSON object');
  out(opts.json ? JSON.stringify(status) : renderStatusTable(status));
}

function clusterId() {
  const h = createHash('sha256').update('minkms-lab-cluster:' + (process.env.LAB_CLUSTER_NAME || 'rollout-lab')).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

async function main() {
  const startedMs = Date.now();
  const opts = parseArgs(process.argv.slice(2));

  const failStart = knobMessage('fail-start', 'Error: simulated start failure (lab knob fail-start)');
  if (failStart !== undefined) die(failStart);

  const cfg = readConfig(opts.config);

  // The API listens while the HSM unseals, as MinKMS does; ready only later.
  const state = { ready: false, startedMs };
  const hostPort = opts.host || `${hostname()}:${DEFAULT_PORT}`;
  const node = {
    self: hostPort,
    volume: opts.volume,
    identity: isMap(cfg.admin) && typeof cfg.admin.identity === 'string' ? cfg.admin.identity : undefined,
    dropMembership: readKnob('drop-membership') !== undefined,
    backupFail: knobMessage('backup-fail', 'backup failed: simulated (lab knob backup-fail)'),
  };
  let listening = Promise.resolve();
  const hp = splitHostPort(hostPort);
  if (readKnob('no-https') === undefined) {
    let tls;
    try {
      if (hp === undefined) throw new ApiProblem(`--host "${hostPort}" is not HOST[:PORT]`);
      tls = loadTls(cfg);
    } catch (e) {
      if (!(e instanceof ApiProblem)) throw e;
      apiNotServed(e.message);
    }
    const ready503 = readKnob('ready-503') !== undefined;
    const apiLog = readKnob('api-log') !== undefined ? path.join(opts.volume, '.lab-api-log') : undefined;
    // A node that left the cluster waits for no peer's writes.
    const peers = () => (node.dropMembership ? [] : readPeers(opts.volume, hostPort));
    if (tls !== undefined) listening = serveApi({ tls, ...hp, state, ready503, apiLog, peers, node });
  }

  const vault = findVault(cfg);
  let hsmLine;
  if (vault !== undefined) {
    const problem = validateVault(vault);
    if (problem) die(`Error: invalid HSM configuration: ${problem}`);
    const reject = knobMessage(
      'reject-vault',
      'Error: failed to open HSM: Error making API request. Code: 400. Errors: * invalid role or secret ID',
    );
    if (reject !== undefined) die(reject);
    // This node alone refuses one credential, as if its Vault path saw it revoked.
    const refused = readKnob('reject-vault-secret');
    if (refused !== undefined && refused.trim() !== '' && vault.section.approle?.secret === refused.trim()) {
      die('Error: failed to open HSM: Error making API request. Code: 400. Errors: * invalid role or secret ID');
    }
    try {
      await openVaultHsm(vault.section, opts.volume);
    } catch (e) {
      die(vaultFailureLines(e).join('\n'));
    }
    hsmLine = `vault (${vault.section.server}, transit key ${vault.section.transit.key})`;
  } else {
    const key = process.env.MINIO_KMS_HSM_KEY;
    if (typeof key !== 'string' || !key.startsWith('hsm:aes256:') || key.length <= 'hsm:aes256:'.length) {
      die('Error: no HSM configured: set MINIO_KMS_HSM_KEY or configure an external HSM');
    }
    hsmLine = 'local (MINIO_KMS_HSM_KEY)';
  }

  const delay = knobNumber('start-delay-ms', 300);
  const noReady = readKnob('no-ready') !== undefined;
  const ignoreTerm = readKnob('ignore-sigterm') !== undefined;
  const crashAfter = readKnob('crash-after-ready-ms') !== undefined ? knobNumber('crash-after-ready-ms', 0) : undefined;

  // Stay alive until a signal arrives.
  setInterval(() => {}, 1 << 30);
  process.on('SIGINT', () => process.exit(0));
  process.on('SIGTERM', () => {
    if (!ignoreTerm) process.exit(0);
  });

  const endpoint = `https://${hostPort}`;
  const apiKey = 'k1:' + randomBytes(32).toString('base64url');

  const delayed = new Promise((resolve) => setTimeout(resolve, delay));
  void Promise.all([delayed, listening]).then(() => {
    out(`${BOLD}Version${RESET}     ${VERSION}`);
    out(`${BOLD}HSM${RESET}         ${hsmLine}`);
    out(`Cluster ID  ${clusterId()}`);
    out(`Endpoint    ${endpoint}`);
    out(`API Key     ${apiKey}`);
    out(`Docs        ${DOCS}`);
    if (noReady) return;
    state.ready = true;
    out(`${BOLD}${GREEN}=> Server is up and running...${RESET}`);
    if (crashAfter !== undefined) {
      setTimeout(() => die('Error: lost connection to the HSM: simulated crash (lab knob crash-after-ready-ms)'), crashAfter);
    }
  });
}

const CLI_COMMANDS = new Set(Object.keys(CLI_USAGE));
const command = process.argv[2];
(CLI_COMMANDS.has(command) ? runCli(command, process.argv.slice(3)) : main()).catch((e) => die(`Error: ${firstLine(e?.message ?? e)}`));
