// Simulated MinIO KMS server for rollout's local lab. Plain Node ESM, no
// TypeScript, no dependencies except `yaml`, loaded from an absolute
// directory (inside a lab node: /opt/lab-yaml, bind-mounted from the repo's
// node_modules/yaml).
//
// Usage (as minkms.service runs it):
//   minkms server VOLUME [--host HOST:PORT] [--config PATH]
//
// Environment:
//   MINIO_KMS_HSM_KEY   local HSM key, hsm:aes256:<base64>
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
//   no-ready              start and stay up, never print the ready line
//   ignore-sigterm        ignore SIGTERM (a restart then blocks)
//   crash-after-ready-ms  exit 1 that many ms after the ready line
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
// Secrets (Vault secret/JWT, tokens, the REK, HSM key) are never printed.

import { createRequire } from 'node:module';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import https from 'node:https';
import { hostname } from 'node:os';
import path from 'node:path';

const KNOBS_DIR = process.env.LAB_KNOBS_DIR || '/var/lib/lab-knobs';
const YAML_DIR = path.resolve(process.env.LAB_YAML_DIR || '/opt/lab-yaml');
const DEFAULT_CONFIG = '/etc/minkms/config.yaml';
const VERSION = '2025-03-12T09-35-18Z (go1.24.1 linux/amd64)';
const DOCS = 'https://min.io/docs/kms';
const CA_BUNDLE = process.env.SSL_CERT_FILE || '/etc/ssl/certs/ca-certificates.crt';
const VAULT_TIMEOUT_MS = 10_000;
const SEALED_REK_FILE = '.vault-sealed-rek';
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
    die('Usage: minkms server VOLUME [--host HOST:PORT] [--config PATH]', 2);
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

function clusterId() {
  const h = createHash('sha256').update('minkms-lab-cluster:' + (process.env.LAB_CLUSTER_NAME || 'rollout-lab')).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));

  const failStart = knobMessage('fail-start', 'Error: simulated start failure (lab knob fail-start)');
  if (failStart !== undefined) die(failStart);

  const cfg = readConfig(opts.config);

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

  const endpoint = `https://${opts.host || `${hostname()}:7373`}`;
  const apiKey = 'k1:' + randomBytes(32).toString('base64url');

  setTimeout(() => {
    out(`${BOLD}Version${RESET}     ${VERSION}`);
    out(`${BOLD}HSM${RESET}         ${hsmLine}`);
    out(`Cluster ID  ${clusterId()}`);
    out(`Endpoint    ${endpoint}`);
    out(`API Key     ${apiKey}`);
    out(`Docs        ${DOCS}`);
    if (noReady) return;
    out(`${BOLD}${GREEN}=> Server is up and running...${RESET}`);
    if (crashAfter !== undefined) {
      setTimeout(() => die('Error: lost connection to the HSM: simulated crash (lab knob crash-after-ready-ms)'), crashAfter);
    }
  }, delay);
}

main().catch((e) => die(`Error: ${firstLine(e?.message ?? e)}`));
