// Summarizes a trace written by bench/profile/trace-ssh.cjs: the timeline of a
// rollout run in stages (startup, connect, plan reads, lock, preflight, per-node
// apply steps, teardown) and, per kind of remote command, how many ran and how
// long they took.
//
//   node bench/profile/summarize-trace.mjs TRACE.jsonl
import { readFileSync } from 'node:fs';

const events = readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const kinds = [
  [/^connect$/, 'ssh handshake'],
  [/ -f -u /, 'journal follow (-f, whole gate)'],
  [/^if \[ ! -e .* stat -L/, 'read file (stat+cat)'],
  [/^sh -c 'set -eu dst=\$1; before=/, 'backup+write+verify (one script)'],
  [/^cat -- \/run\/rollout\/lock/, 'lock: read'],
  [/mkdir -p \/run\/rollout/, 'lock: take'],
  [/"runId":/, 'lock: release'],
  [/^echo "@uid/, 'preflight: node checks'],
  [/reset-failed .* systemctl restart/, 'systemctl restart'],
  [/^exec timeout \d+ sh -c 'u=\$1 systemctl show/, 'state+cursor+restart+gate (one script)'],
  [/^systemctl show/, 'systemctl show (state)'],
  [/^journalctl --no-pager -n 1 -o json/, 'journal cursor'],
  [/backups\/rollout/, 'prune backups'],
  [/^GET|^POST|^PUT|^https?:/, 'vault (https, from here)'],
];
const kindOf = (e) => {
  const text = e.kind === 'connect' ? 'connect' : e.cmd;
  for (const [re, name] of kinds) if (re.test(text)) return name;
  return e.kind === 'https' ? 'vault (https, from here)' : `other: ${e.cmd.slice(0, 50)}`;
};

const start = events.find((e) => e.kind === 'start');
const exit = events.find((e) => e.kind === 'exit');
const work = events.filter((e) => !['start', 'exit'].includes(e.kind));
console.log(`process: ${(exit?.start_ms ?? 0).toFixed(0)} ms until exit; first traced event at ${Math.min(...work.map((e) => e.start_ms)).toFixed(0)} ms (module loading, inventory, secrets before that)`);

const byKind = new Map();
for (const e of work) {
  const k = kindOf(e);
  const list = byKind.get(k) ?? [];
  list.push(e.end_ms - e.start_ms);
  byKind.set(k, list);
}
const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log('\nremote work by kind (count, median ms, total ms):');
for (const [k, xs] of [...byKind].sort((a, b) => b[1].reduce((s, x) => s + x, 0) - a[1].reduce((s, x) => s + x, 0))) {
  console.log(`  ${k.padEnd(36)} ${String(xs.length).padStart(5)} ${med(xs).toFixed(1).padStart(9)} ${xs.reduce((s, x) => s + x, 0).toFixed(0).padStart(9)}`);
}

// Per node: the restarts are serial, so each node's apply window runs from its
// first backup+write to the end of its last post-gate state read.
const isRestart = (e) => kindOf(e) === 'systemctl restart' || kindOf(e).startsWith('state+cursor+restart');
const restarts = work.filter(isRestart).sort((a, b) => a.start_ms - b.start_ms);
if (restarts.length) {
  const firstWrite = Math.min(...work.filter((e) => kindOf(e) === 'backup+write+verify (one script)').map((e) => e.start_ms));
  console.log(`\nbefore the first node's write: ${firstWrite.toFixed(0)} ms (startup, connect, plan, lock, preflight)`);
  console.log("\nper node (ms from the node's write to the next node's write, or to its last command):");
  const writes = work.filter((e) => kindOf(e) === 'backup+write+verify (one script)').sort((a, b) => a.start_ms - b.start_ms);
  for (let i = 0; i < writes.length; i++) {
    const w = writes[i];
    const node = w.node;
    const next = writes[i + 1]?.start_ms ?? Infinity;
    const mine = work.filter((e) => e.start_ms >= w.start_ms && e.start_ms < next);
    const own = mine.filter((e) => e.node === node);
    const r = own.find(isRestart);
    const f = own.find((e) => kindOf(e) === 'journal follow (-f, whole gate)') ?? own.find((e) => kindOf(e).startsWith('state+cursor+restart'));
    const others = mine.filter((e) => e.node !== node && kindOf(e) === 'systemctl show (state)');
    const end = Math.max(...own.map((e) => e.end_ms));
    const span = (Number.isFinite(next) ? next : end) - w.start_ms;
    const steps = own
      .sort((a, b) => a.start_ms - b.start_ms)
      .map((e) => `${kindOf(e).split(' ')[0]}@${(e.start_ms - w.start_ms).toFixed(0)}+${(e.end_ms - e.start_ms).toFixed(0)}`)
      .join(' ');
    console.log(
      `  ${node.padEnd(16)} ${span.toFixed(0).padStart(6)} ms | write ${(w.end_ms - w.start_ms).toFixed(0)} | others' state x${others.length} until ${others.length ? (Math.max(...others.map((e) => e.end_ms)) - w.start_ms).toFixed(0) : '-'} | restart at ${r ? (r.start_ms - w.start_ms).toFixed(0) : '-'} took ${r ? (r.end_ms - r.start_ms).toFixed(0) : '-'} | gate ended ${f ? (f.end_ms - (r?.start_ms ?? 0)).toFixed(0) : '-'} ms after the restart command began`,
    );
    if (process.env.VERBOSE) console.log(`      ${steps}`);
  }
  const lastEnd = Math.max(...work.map((e) => e.end_ms));
  console.log(`\nafter the last traced command: ${((exit?.start_ms ?? lastEnd) - lastEnd).toFixed(0)} ms until exit`);
}
void start;
