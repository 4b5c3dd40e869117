// Summarizes a trace written by bench/profile/trace-ssh.cjs: per kind of remote
// command, how many ran and how long they took; then, for an apply, the
// timeline of the fixed work before the first restart and each node's turn,
// split by the marks the trace records (the @-lines rollout's remote scripts
// print, the control words it sends).
//
//   node bench/profile/summarize-trace.mjs TRACE.jsonl
import { readFileSync } from 'node:fs';

const events = readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.kind !== 'wire');
const kinds = [
  [/^connect$/, 'ssh handshake'],
  [/^sh -c 'umask 077; \[ -d \/run\/rollout \]/, 'first read: lock + node checks + files'],
  [/^sh -c 'n=\$#; for p do/, 'read files (stat+cat)'],
  [/^sh -c 'u=\$1; pid=0; start=/, 'state probe (health checks, staging, release)'],
  [/^exec timeout \d+ sh -c /, 'turn channel (checks, cursor, go, moves, restart, journal)'],
  [/rollout-follow/, 'journal follow again (after a lost link)'],
  [/^sh -c 'set -u n=\$1; shift/, 'staging (a command: no probe)'],
  [/^echo @checks-begin/, 'node checks (a command)'],
  [/rollout-release|rid=\$1; keep=/, 'lock release (a command: no probe)'],
  [/^systemctl show/, 'systemctl show (a command)'],
  [/^GET|^POST|^PUT|^https?:/, 'vault (https, from here)'],
];
// The agent's verbs (traces from before the verb was recorded fall back to the patterns).
const verbs = {
  lock: 'lock (a command)',
  check: 'node checks (a command)',
  read: 'read files (stat+cat)',
  probe: 'state probe (health checks, staging, release)',
  restart: 'turn channel (checks, cursor, go, moves, restart, journal)',
  follow: 'journal follow again (after a lost link)',
  ready: 'own readiness, polled (a command)',
  cluster: 'the cluster CLI (a command)',
  stage: 'staging (a command: no probe)',
  release: 'lock release (a command: no probe)',
};
const kindOf = (e) => {
  if (e.verb) return verbs[e.verb] ?? `rollout-${e.verb}`;
  const text = e.kind === 'connect' ? 'connect' : e.cmd;
  for (const [re, name] of kinds) if (re.test(text)) return name;
  return e.kind === 'https' ? 'vault (https, from here)' : `other: ${e.cmd.slice(0, 50)}`;
};

const exit = events.find((e) => e.kind === 'exit');
const work = events.filter((e) => !['start', 'exit'].includes(e.kind));
const ms = (x) => `${x.toFixed(0)} ms`;
console.log(`process: ${ms(exit?.start_ms ?? 0)} until exit; first traced event at ${ms(Math.min(...work.map((e) => e.start_ms)))} (node start, module loading, inventory, secrets before that)`);

const byKind = new Map();
for (const e of work) byKind.set(kindOf(e), [...(byKind.get(kindOf(e)) ?? []), e.end_ms - e.start_ms]);
const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const sum = (xs) => xs.reduce((s, x) => s + x, 0);
console.log('\nremote work by kind (count, median ms, total ms):');
for (const [k, xs] of [...byKind].sort((a, b) => sum(b[1]) - sum(a[1]))) {
  console.log(`  ${k.padEnd(60)} ${String(xs.length).padStart(5)} ${med(xs).toFixed(1).padStart(9)} ${sum(xs).toFixed(0).padStart(9)}`);
}

const at = (e, mark) => e.marks?.find((m) => m[1] === mark)?.[0];
const turns = work.filter((e) => kindOf(e).startsWith('turn channel')).sort((a, b) => (at(a, '> go') ?? a.start_ms) - (at(b, '> go') ?? b.start_ms));
if (turns.length) {
  const span = (kind, f) => {
    const es = work.filter((e) => kindOf(e) === kind);
    return es.length ? `${ms(Math.min(...es.map((e) => e.start_ms)))} to ${ms(Math.max(...es.map(f)))}` : '-';
  };
  console.log('\nbefore the first restart (first start to last end, ms since the process started):');
  console.log(`  handshakes                  ${span('ssh handshake', (e) => e.end_ms)}`);
  console.log(`  locks                       ${span('lock (a command)', (e) => e.end_ms)}`);
  console.log(`  node checks                 ${span('node checks (a command)', (e) => e.end_ms)}`);
  console.log(`  reads                       ${span('read files (stat+cat)', (e) => e.end_ms)}`);
  console.log(`  Vault from here             ${span('vault (https, from here)', (e) => e.end_ms)}`);
  const probes = work.filter((e) => kindOf(e).startsWith('state probe'));
  const staged = probes.map((e) => at(e, '@stage-end')).filter((x) => x !== undefined);
  if (staged.length) console.log(`  probes opened, staged by    ${ms(Math.max(...probes.map((e) => e.open_ms)))}, ${ms(Math.max(...staged))}`);
  console.log(`  first go                    ${ms(at(turns[0], '> go') ?? NaN)}`);

  console.log('\neach turn (ms): go to @restarted (moves, restart) | to the batch with the ready line | ready line to the next go (health check, ping)');
  const readyAt = (e) => e.marks?.filter((m) => m[1] === '@now-end').at(-1)?.[0];
  for (let i = 0; i < turns.length; i++) {
    const e = turns[i];
    const go = at(e, '> go');
    const restarted = at(e, '@restarted');
    const ready = readyAt(e);
    const nextGo = turns[i + 1] ? at(turns[i + 1], '> go') : undefined;
    const cell = (a, b) => (a !== undefined && b !== undefined ? (b - a).toFixed(0) : '-').padStart(6);
    console.log(`  ${e.node.padEnd(16)} ${cell(go, restarted)} | ${cell(restarted, ready)} | ${cell(ready, nextGo)}   (opened ${go !== undefined ? ms(go - e.start_ms) : '-'} before its go)`);
  }
  const lastReady = readyAt(turns.at(-1));
  if (exit && lastReady !== undefined) console.log(`\nafter the last ready line: ${ms(exit.start_ms - lastReady)} until exit (lock release, report)`);
}
