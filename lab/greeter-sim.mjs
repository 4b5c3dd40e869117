// greeter: a small service of the rollout lab that has nothing to do with
// MinKMS, for a second playbook (playbooks/greeter-settings.yaml). It reads a
// YAML config and an EnvironmentFile, refuses an invalid one at start (one
// `greeter: error: ...` line, exit 1), and otherwise serves its greeting over
// HTTP on a unix socket. Plain Node ESM; `yaml` is loaded from an absolute
// directory (inside a lab node: /opt/lab-yaml).
//
// Usage (as greeter.service runs it):
//   greeter --config PATH [--socket PATH]
//
// Config (YAML mapping; every key optional, any other key is an error):
//   version: v1
//   greeting:
//     text: "Hello"            1 to 80 characters
//   log:
//     level: info              debug | info | warn
//
// Environment (greeter.service: EnvironmentFile=-/etc/default/greeter):
//   GREETER_WORKERS   whole number 1..64 (default 1)
//   LAB_YAML_DIR      dir of the yaml package (default /opt/lab-yaml)
//
// Journal lines of a good start, in this order:
//   greeter: config /etc/greeter/config.yaml
//   greeter: listening on /run/greeter/greeter.sock, greeting="Hello" workers=1
//   greeter ready
// `curl --unix-socket /run/greeter/greeter.sock http://greeter/` answers the
// greeting (one line). SIGTERM: `greeter: stopping`, exit 0.
//
// Quick check on the host:
//   LAB_YAML_DIR=node_modules/yaml node lab/greeter-sim.mjs --config cfg.yaml --socket /tmp/greeter.sock
import { readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';

const YAML_DIR = path.resolve(process.env.LAB_YAML_DIR || '/opt/lab-yaml');
const DEFAULT_SOCKET = '/run/greeter/greeter.sock';
const KEYS = { version: ['v1'], greeting: ['text'], log: ['level'] };
const LEVELS = ['debug', 'info', 'warn'];
const MAX_GREETING = 80;

// One write per line; to the journal's stream socket each is a line of its own.
function say(line) {
  process.stdout.write(`${line}\n`);
}

function fail(problem) {
  say(`greeter: error: ${problem}`);
  process.exit(1);
}

function parseArgs(argv) {
  const opts = { config: null, socket: DEFAULT_SOCKET };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if ((a === '--config' || a === '--socket') && i + 1 < argv.length) opts[a.slice(2)] = argv[++i];
    else fail(`unexpected argument ${JSON.stringify(a)} (usage: greeter --config PATH [--socket PATH])`);
  }
  if (!opts.config) fail('no --config given (usage: greeter --config PATH [--socket PATH])');
  return opts;
}

/** The config's settings, or a fail() naming the first problem as the service would. */
function readSettings(file) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    fail(`cannot read ${file}: ${err.code ?? err.message}`);
  }
  const { parseDocument } = createRequire(import.meta.url)(YAML_DIR);
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) fail(`${file}: ${String(doc.errors[0].message).split('\n')[0]}`);
  const config = doc.toJS() ?? {};
  if (typeof config !== 'object' || Array.isArray(config)) fail(`${file}: not a YAML mapping`);
  for (const [key, value] of Object.entries(config)) {
    if (!(key in KEYS)) fail(`${file}: unknown key "${key}"`);
    if (key === 'version') {
      if (value !== 'v1') fail(`${file}: version must be v1`);
      continue;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(`${file}: ${key} must be a mapping`);
    for (const sub of Object.keys(value)) if (!KEYS[key].includes(sub)) fail(`${file}: unknown key "${key}.${sub}"`);
  }
  const greeting = config.greeting?.text ?? 'Hello';
  if (typeof greeting !== 'string') fail(`${file}: greeting.text must be a string`);
  if (greeting.trim() === '') fail(`${file}: greeting.text is empty`);
  if ([...greeting].length > MAX_GREETING) fail(`${file}: greeting.text is longer than ${MAX_GREETING} characters`);
  if (/[\u0000-\u001f\u007f]/.test(greeting)) fail(`${file}: greeting.text holds a control character`);
  const level = config.log?.level ?? 'info';
  if (!LEVELS.includes(level)) fail(`${file}: log.level must be one of ${LEVELS.join(', ')}`);
  return { greeting, level };
}

function readWorkers() {
  const raw = process.env.GREETER_WORKERS;
  if (raw === undefined || raw === '') return 1;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > 64) fail(`GREETER_WORKERS must be a whole number from 1 to 64, not ${JSON.stringify(raw)}`);
  return n;
}

const opts = parseArgs(process.argv.slice(2));
say(`greeter: config ${opts.config}`);
const settings = readSettings(opts.config);
const workers = readWorkers();

// A socket left by a killed process would make listen fail with EADDRINUSE.
rmSync(opts.socket, { force: true });
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(`${settings.greeting}\n`);
});
server.on('error', (err) => fail(`cannot listen on ${opts.socket}: ${err.code ?? err.message}`));
server.listen(opts.socket, () => {
  say(`greeter: listening on ${opts.socket}, greeting=${JSON.stringify(settings.greeting)} workers=${workers}`);
  say('greeter ready');
});
process.on('SIGTERM', () => {
  say('greeter: stopping');
  server.close();
  rmSync(opts.socket, { force: true });
  process.exit(0);
});
