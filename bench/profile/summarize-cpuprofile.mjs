// Where a rollout process spent its CPU, from a V8 profile written by
// `node --cpu-prof`: self time by package (node_modules/<pkg>, rollout's own
// dist/, node's internals, GC, idle) and the top functions by self time.
//
//   node bench/profile/summarize-cpuprofile.mjs FILE.cpuprofile [TOP=25]
import { readFileSync } from 'node:fs';

const file = process.argv[2];
const top = Number(process.argv[3] ?? 25);
const prof = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
// Time per sample: the deltas between consecutive samples (microseconds).
const self = new Map();
for (let i = 0; i < prof.samples.length; i++) {
  const id = prof.samples[i];
  self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);

const packageOf = (cf) => {
  const url = cf.url ?? '';
  const name = cf.functionName;
  if (name === '(idle)') return '(idle: waiting for the network or the nodes)';
  if (name === '(garbage collector)') return '(garbage collector)';
  if (name === '(program)') return '(program: V8/native, not attributed)';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1];
  if (/\/dist\//.test(url)) return `rollout ${url.replace(/.*\/dist\//, 'dist/').replace(/\/[^/]*$/, '/')}`;
  if (url.startsWith('node:') || url === '') return 'node internals (node:*, native)';
  return url;
};

const agg = (keyOf) => {
  const m = new Map();
  for (const [id, us] of self) {
    const k = keyOf(byId.get(id).callFrame);
    m.set(k, (m.get(k) ?? 0) + us);
  }
  return [...m].sort((a, b) => b[1] - a[1]);
};
const pct = (us) => `${((100 * us) / total).toFixed(1).padStart(5)}%`;
const ms = (us) => `${(us / 1000).toFixed(0).padStart(6)} ms`;

const wall = (prof.endTime - prof.startTime) / 1000;
const idle = agg((cf) => cf.functionName).find(([k]) => k === '(idle)')?.[1] ?? 0;
console.log(`${file}: ${wall.toFixed(0)} ms profiled, ${((total - idle) / 1000).toFixed(0)} ms on the CPU (${((100 * (total - idle)) / total).toFixed(0)}% busy)`);
console.log('\nself time by package:');
for (const [k, us] of agg(packageOf).slice(0, 15)) console.log(`  ${ms(us)} ${pct(us)}  ${k}`);
console.log(`\ntop ${top} functions by self time:`);
for (const [k, us] of agg((cf) => `${cf.functionName || '(anonymous)'}  ${(cf.url ?? '').replace(/.*node_modules\//, '').replace(/.*\/dist\//, 'dist/')}:${cf.lineNumber + 1}`).slice(0, top)) {
  console.log(`  ${ms(us)} ${pct(us)}  ${k}`);
}
