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
//                         content, exit 1; a config without Vault is unaffected
//   no-ready              start and stay up, never print the ready line
//   ignore-sigterm        ignore SIGTERM (a restart then blocks)
//   crash-after-ready-ms  exit 1 that many ms after the ready line
//
// Secrets (Vault secret/JWT, HSM key) are never printed.

import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import path from 'node:path';

const KNOBS_DIR = process.env.LAB_KNOBS_DIR || '/var/lib/lab-knobs';
const YAML_DIR = path.resolve(process.env.LAB_YAML_DIR || '/opt/lab-yaml');
const DEFAULT_CONFIG = '/etc/minkms/config.yaml';
const VERSION = '2025-03-12T09-35-18Z (go1.24.1 linux/amd64)';
const DOCS = 'https://min.io/docs/kms';

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

function clusterId() {
  const h = createHash('sha256').update('minkms-lab-cluster:' + (process.env.LAB_CLUSTER_NAME || 'rollout-lab')).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

function main() {
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

main();
