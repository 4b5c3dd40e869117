// Counts the round trips on the critical path of each node's turn in a traced
// `rollout apply` (bench/profile/trace-ssh.cjs) run through the latency relay
// (BENCH_RTT): from a node's `go` to the next node's `go`.
//
//   node bench/profile/round-trips.mjs --rtt 50 [--base RTT0-TRACE.jsonl] TRACE.jsonl
//
// Two ways, from the trace alone:
// - walked: from the next node's `go` back to this node's, each step to what
//   unblocked it. A chunk rollout sent was unblocked by the last chunk it
//   received before (local time in between); a chunk it received from node X
//   was unblocked by the last chunk it sent to X at least one RTT earlier (the
//   relay delays each way by RTT/2, so no later one can have caused it): that
//   step is one round trip, and whatever it took beyond the RTT was the
//   node's own work. So turn = round trips x RTT + node work + local time.
// - derived (with --base, the same apply traced at RTT 0): (turn at this RTT
//   - turn at RTT 0) / RTT, medians over the turns: the node-side work is the
//   same at both RTTs, so what is left is the RTT times the sequential trips.
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i < 0 ? undefined : args.splice(i, 2)[1];
};
const rtt = Number(opt('--rtt'));
const baseFile = opt('--base');
const file = args[0];
if (!(rtt > 0) || !file) {
  console.error('usage: node bench/profile/round-trips.mjs --rtt MS [--base RTT0-TRACE.jsonl] TRACE.jsonl');
  process.exit(2);
}

const load = (f) => readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const goAt = (e) => e.marks?.find((m) => m[1] === '> go')?.[0];
// Each turn channel (the one rollout wrote `go` to): its node and `go` time, in the order of the turns.
const turnsOf = (events) =>
  events
    .filter((e) => e.kind === 'exec' && goAt(e) !== undefined)
    .map((e) => ({ node: e.node, go: goAt(e), marks: e.marks }))
    .sort((a, b) => a.go - b.go);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const events = load(file);
const wire = events.filter((e) => e.kind === 'wire').sort((a, b) => a.t - b.t);
const turns = turnsOf(events);
if (wire.length === 0 || turns.length < 2) {
  console.error(`${file}: needs a trace with wire events (bench/profile/trace-ssh.cjs) and at least two turns`);
  process.exit(1);
}
// Marks near a wire chunk (the channel-level meaning of an encrypted chunk).
const allMarks = events.flatMap((e) => (e.marks ?? []).map(([t, text]) => ({ t, node: e.node, text })));
const label = (w) => {
  const near = allMarks.filter((m) => m.node === w.node && Math.abs(m.t - w.t) <= 1.5);
  return near.length ? near.map((m) => m.text).join(' ') : '';
};
// The first chunk sent to `node` at or after time t (a `go` leaves the socket right after its mark).
const firstOut = (node, t) => wire.find((w) => w.dir === 'out' && w.node === node && w.t >= t - 0.01);
const lastBefore = (pred, t) => {
  for (let i = wire.length - 1; i >= 0; i--) if (wire[i].t <= t && pred(wire[i])) return wire[i];
  return undefined;
};

// Walks back from the chunk that carried the next `go` to the one that carried this turn's.
function walk(turn, next) {
  const start = firstOut(turn.node, turn.go);
  let cur = firstOut(next.node, next.go);
  const steps = [];
  let trips = 0;
  let nodeMs = 0;
  let localMs = 0;
  while (cur && cur.t > start.t) {
    if (cur.dir === 'out') {
      const cause = lastBefore((w) => w.dir === 'in' && w !== cur, cur.t);
      if (!cause || cause.t < start.t) {
        localMs += cur.t - start.t;
        break;
      }
      localMs += cur.t - cause.t;
      cur = cause;
    } else {
      // Timers fire up to a millisecond late: a reply can come back a little over one RTT after its request.
      const cause = lastBefore((w) => w.dir === 'out' && w.node === cur.node, cur.t - rtt + 0.5);
      if (!cause) break;
      trips++;
      const waited = cur.t - Math.max(cause.t, start.t);
      nodeMs += Math.max(0, waited - rtt);
      steps.push({ node: cur.node, sent: cause.t, got: cur.t, waited, sentWhat: label(cause), gotWhat: label(cur) });
      cur = cause;
    }
  }
  return { wall: next.go - turn.go, trips, nodeMs, localMs, steps: steps.reverse() };
}

console.log(`${file}: RTT ${rtt} ms, ${turns.length} turns`);
console.log('\nwalked critical path, each turn (from its go to the next go):');
console.log('  node              wall ms  round trips  node work ms  local ms  (wall - node work) / RTT');
const walked = [];
for (let i = 0; i + 1 < turns.length; i++) {
  const w = walk(turns[i], turns[i + 1]);
  walked.push(w);
  console.log(
    `  ${turns[i].node.padEnd(16)} ${w.wall.toFixed(0).padStart(8)} ${String(w.trips).padStart(12)} ${w.nodeMs.toFixed(0).padStart(13)} ${w.localMs.toFixed(0).padStart(9)} ${((w.wall - w.nodeMs) / rtt).toFixed(1).padStart(12)}`,
  );
}
console.log(`  median: ${median(walked.map((w) => w.trips))} round trips per turn, wall ${median(walked.map((w) => w.wall)).toFixed(0)} ms`);

const example = walked[walked.length >> 1];
console.log(`\nthe waits of one turn (${turns[walked.indexOf(example)].node}), in order: ms after its go, waited ms (RTT + the node's work), what the chunks carried:`);
const go0 = turns[walked.indexOf(example)].go;
for (const s of example.steps) {
  console.log(`  +${(s.sent - go0).toFixed(0).padStart(6)}  ${s.waited.toFixed(0).padStart(6)} ms  ${s.node.padEnd(16)} ${s.sentWhat || '(no mark)'} -> ${s.gotWhat || '(no mark)'}`);
}

if (baseFile) {
  const base = turnsOf(load(baseFile));
  const walls = (ts) => ts.slice(1).map((t, i) => t.go - ts[i].go);
  const here = median(walls(turns));
  const there = median(walls(base));
  console.log(`\nderived: median turn ${here.toFixed(0)} ms at RTT ${rtt} vs ${there.toFixed(0)} ms at RTT 0 (${baseFile}):`);
  console.log(`  (${here.toFixed(0)} - ${there.toFixed(0)}) / ${rtt} = ${((here - there) / rtt).toFixed(1)} round trips per turn`);
}
