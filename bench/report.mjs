// Turns the bench's raw samples into bench/results.json and bench/results.md,
// and prints the table. Called by bench/run.sh:
//   node bench/report.mjs SAMPLES.tsv META.tsv OUT_DIR
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const [samplesFile, metaFile, outDir] = process.argv.slice(2);
if (!samplesFile || !metaFile || !outDir) {
  console.error('usage: node bench/report.mjs SAMPLES.tsv META.tsv OUT_DIR');
  process.exit(2);
}

const meta = Object.fromEntries(
  readFileSync(metaFile, 'utf8').split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('\t')), l.slice(l.indexOf('\t') + 1)]),
);
const [header, ...rows] = readFileSync(samplesFile, 'utf8').trim().split('\n');
const cols = header.split('\t');
const samples = rows.filter(Boolean).map((l) => {
  const o = Object.fromEntries(l.split('\t').map((v, i) => [cols[i], v]));
  // Samples from before the latency mode have no rtt_ms column: loopback; from before the CPU columns, no CPU.
  const cpu = (v) => (v === undefined || v === '' || Number.isNaN(Number(v)) ? null : Number(v));
  return { rttMs: Number(o.rtt_ms ?? 0), n: Number(o.n), op: o.op, tool: o.tool, run: Number(o.run), seconds: Number(o.seconds), rssKb: Number(o.rss_kb), vitest: o.vitest === '1', cpuTool: cpu(o.cpu_tool_s), cpuMachine: cpu(o.cpu_machine_s) };
});

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const round = (x, d = 3) => (x === null || x === undefined || Number.isNaN(x) ? null : Number(x.toFixed(d)));

// Variants (BENCH_VARIANTS) are other commits of rollout, run as "rollout [label]"
// exactly like rollout: in the order given (meta "variants"), else as sampled.
const VARIANT_RE = /^rollout \[([a-z0-9-]+)\]$/;
const isVariant = (tool) => VARIANT_RE.test(tool);
const variantLabels = [...new Set([...(meta.variants ?? '').split(/\s+/).filter(Boolean), ...samples.map((s) => s.tool.match(VARIANT_RE)?.[1]).filter(Boolean)])];
const variantTools = variantLabels.map((l) => `rollout [${l}]`);
const TOOL_ORDER = ['rollout', ...variantTools, 'rollout (parallel 16)', 'ansible', 'openssh floor', 'openssh floor (new config)'];
const isFloor = (tool) => tool.startsWith('openssh floor');
// Each tool's overhead is taken over the floor of the same work on the nodes:
// rollout's apply leaves every node on the new config, whose start (a Vault login
// and unseal) is slower than the old one's, so its floor restarts nodes that
// already hold it; Ansible's apply.yml restarts nodes on the old config.
const floorFor = (op, tool, has) => (op === 'apply' && tool.startsWith('rollout') && has('openssh floor (new config)') ? 'openssh floor (new config)' : 'openssh floor');
const OPS = ['plan', 'apply'];
const sizes = [...new Set(samples.filter((s) => OPS.includes(s.op)).map((s) => s.n))].sort((a, b) => a - b);
const rtts = [...new Set(samples.map((s) => s.rttMs))].sort((a, b) => a - b);

// One row per round-trip time, operation, size and tool; every ratio and
// overhead is taken within the same RTT.
const results = [];
for (const rtt of rtts) for (const op of OPS) {
  for (const n of sizes) {
    const here = samples.filter((s) => s.rttMs === rtt && s.op === op && s.n === n);
    if (here.length === 0) continue;
    const stat = (tool) => {
      const xs = here.filter((s) => s.tool === tool).map((s) => s.seconds);
      return xs.length ? median(xs) : null;
    };
    const ro = stat('rollout');
    for (const tool of TOOL_ORDER) {
      const mine = here.filter((s) => s.tool === tool);
      if (mine.length === 0) continue;
      const secs = mine.map((s) => s.seconds);
      const med = median(secs);
      const floorTool = floorFor(op, tool, (t) => stat(t) !== null);
      const floor = stat(floorTool);
      const cpuMedian = (key) => {
        const xs = mine.map((s) => s[key]).filter((x) => x !== null);
        return xs.length === mine.length ? median(xs) : null;
      };
      results.push({
        rtt_ms: rtt,
        n,
        op,
        tool,
        runs: mine.length,
        seconds: secs.map((x) => round(x)),
        median_s: round(med),
        min_s: round(Math.min(...secs)),
        max_s: round(Math.max(...secs)),
        spread_pct: round((100 * (Math.max(...secs) - Math.min(...secs))) / med, 1),
        ratio_to_rollout: ro ? round(med / ro, 2) : null,
        ratio_to_floor: floor && !isFloor(tool) ? round(med / floor, 2) : null,
        overhead_per_node_ms: floor !== null && !isFloor(tool) ? round((1000 * (med - floor)) / n, 1) : null,
        overhead_over: isFloor(tool) ? null : floorTool,
        peak_rss_mb: round(Math.max(...mine.map((s) => s.rssKb)) / 1024, 1),
        cpu_tool_s: round(cpuMedian('cpuTool'), 2),
        cpu_machine_s: round(cpuMedian('cpuMachine'), 2),
        vitest_during_runs: mine.filter((s) => s.vitest).length,
      });
    }
  }
}

const row = (op, n, tool, rtt = 0) => results.find((r) => r.rtt_ms === rtt && r.op === op && r.n === n && r.tool === tool);

// The issue's targets, each decided from this run's numbers (or "not measured"),
// all on loopback (RTT 0), where they were set.
const targets = [];
const target = (name, goal, measured, pass, rows = []) => {
  const disturbed = rows.some((r) => r?.vitest_during_runs > 0);
  const m = measured === null ? null : `${measured}${disturbed ? ' (from disturbed samples)' : ''}`;
  targets.push({ target: name, goal, measured: m, status: measured === null ? 'not measured' : pass ? 'met' : 'MISSED' });
};
for (const n of [50, 100]) {
  const ro = row('plan', n, 'rollout');
  const fl = row('plan', n, 'openssh floor');
  const ratio = ro && fl ? ro.median_s / fl.median_s : null;
  target(`plan N=${n}: rollout vs raw OpenSSH floor`, '<= 1.5x', ratio === null ? null : `${ratio.toFixed(2)}x (${ro.median_s} s vs ${fl.median_s} s)`, ratio !== null && ratio <= 1.5, [ro, fl]);
}
{
  const ro = row('apply', 10, 'rollout');
  const an = row('apply', 10, 'ansible');
  const ov = ro?.overhead_per_node_ms ?? null;
  const plain = row('apply', 10, 'openssh floor');
  const vsPlain = ro && plain ? round((1000 * (ro.median_s - plain.median_s)) / 10, 1) : null;
  target('apply N=10: rollout overhead per node over the floor', '< 100 ms', ov === null ? null : `${ov} ms/node over "${ro.overhead_over}"${ro.overhead_over !== 'openssh floor' && vsPlain !== null ? ` (${vsPlain} ms/node over the old-config floor)` : ''}`, ov !== null && ov < 100, [ro, row('apply', 10, ro?.overhead_over ?? 'openssh floor')]);
  const factor = ro && an && ro.overhead_per_node_ms > 0 ? an.overhead_per_node_ms / ro.overhead_per_node_ms : null;
  const measured = ro && an ? `Ansible ${an.overhead_per_node_ms} ms/node vs rollout ${ro.overhead_per_node_ms} ms/node${factor === null ? '' : ` (${factor.toFixed(1)}x)`}` : null;
  target('apply N=10: rollout overhead per node vs Ansible\'s', '>= 6x less', measured, ro && an && (ro.overhead_per_node_ms <= 0 || factor >= 6), [ro, an, row('apply', 10, 'openssh floor')]);
}
{
  const a = row('plan', 10, 'rollout');
  const b = row('plan', 100, 'rollout');
  const r = a && b ? b.median_s / a.median_s : null;
  target('plan N=10 -> 100: rollout time grows no worse than linearly', 't(100)/t(10) <= 10', r === null ? null : `${r.toFixed(2)} (${a.median_s} s -> ${b.median_s} s)`, r !== null && r <= 10, [a, b]);
}
{
  const at100 = results.filter((r) => r.n === 100 && r.tool.startsWith('rollout') && !isVariant(r.tool));
  const peak = at100.length ? Math.max(...at100.map((r) => r.peak_rss_mb)) : null;
  target('peak RSS of rollout at N=100', '< 200 MB', peak === null ? null : `${peak} MB`, peak !== null && peak < 200, at100);
}

// Issue 14's targets, over a real network: at RTT 50 ms plan at most the
// floor's time and apply at most 3 round trips (150 ms) per node over it; and
// apply still at most 1.5x its floor over loopback.
for (const n of [10, 50]) {
  const ro = row('plan', n, 'rollout', 50);
  const fl = row('plan', n, 'openssh floor', 50);
  const ratio = ro && fl ? ro.median_s / fl.median_s : null;
  target(`RTT 50, plan N=${n}: rollout vs raw OpenSSH floor`, '<= 1.0x', ratio === null ? null : `${ratio.toFixed(2)}x (${ro.median_s} s vs ${fl.median_s} s)`, ratio !== null && ratio <= 1.0, [ro, fl]);
}
for (const n of [10, 50]) {
  const ro = row('apply', n, 'rollout', 50);
  const ov = ro?.overhead_per_node_ms ?? null;
  target(`RTT 50, apply N=${n}: rollout overhead per node over the floor`, '<= 150 ms (3 RTT)', ov === null ? null : `${ov} ms/node over "${ro.overhead_over}" (${(ov / 50).toFixed(1)} RTT)`, ov !== null && ov <= 150, [ro, row('apply', n, ro?.overhead_over ?? 'openssh floor', 50)]);
}
for (const n of [10, 50]) {
  const ro = row('apply', n, 'rollout', 0);
  const ratio = ro?.ratio_to_floor ?? null;
  target(`RTT 0, apply N=${n}: rollout vs its floor`, '<= 1.5x', ratio === null ? null : `${ratio.toFixed(2)}x over "${ro.overhead_over}"`, ratio !== null && ratio <= 1.5, [ro]);
}

// Marginal cost per extra node of rollout's plan between consecutive sizes (a
// superlinear tool shows it growing).
const slopes = [];
for (const rtt of rtts) for (const tool of TOOL_ORDER) {
  const pts = sizes.map((n) => row('plan', n, tool, rtt)).filter(Boolean);
  for (let i = 1; i < pts.length; i++) {
    slopes.push({ rtt_ms: rtt, tool, from: pts[i - 1].n, to: pts[i].n, ms_per_extra_node: round((1000 * (pts[i].median_s - pts[i - 1].median_s)) / (pts[i].n - pts[i - 1].n), 1) });
  }
}

// Each variant against rollout, its peer in the same invocation: the same
// RTT, op and N, medians of the same number of rotated runs. Per node = the
// difference / N; for apply, whose restarts go one node at a time, that is
// what the variant changes on each node's turn.
const medianOf = (rtt, op, n, tool) => {
  const xs = samples.filter((s) => s.rttMs === rtt && s.op === op && s.n === n && s.tool === tool).map((s) => s.seconds);
  return xs.length ? median(xs) : null;
};
const variantComparison = [];
for (const rtt of rtts) for (const op of OPS) for (const n of sizes) {
  const ro = medianOf(rtt, op, n, 'rollout');
  if (ro === null) continue;
  for (const [i, tool] of variantTools.entries()) {
    const v = medianOf(rtt, op, n, tool);
    if (v === null) continue;
    const label = variantLabels[i];
    const diffMsPerNode = round((1000 * (v - ro)) / n, 1);
    variantComparison.push({
      rtt_ms: rtt,
      op,
      n,
      variant: label,
      commit: meta[`variant_${label}`] ?? null,
      rollout_median_s: round(ro),
      variant_median_s: round(v),
      diff_ms: round(1000 * (v - ro), 0),
      diff_ms_per_node: diffMsPerNode,
      diff_ms_per_node_turn: op === 'apply' ? diffMsPerNode : null,
      ratio: ro > 0 ? round(v / ro, 3) : null,
      disturbed_samples: (row(op, n, 'rollout', rtt)?.vitest_during_runs ?? 0) + (row(op, n, tool, rtt)?.vitest_during_runs ?? 0),
    });
  }
}

// Start-up (bench/startup.sh): per build and Node.js, the median of --version and of a one-node plan.
const startup = [];
for (const tool of [...new Set(samples.filter((s) => s.op.startsWith('start-')).map((s) => s.tool))]) {
  const med = (op) => {
    const xs = samples.filter((s) => s.op === op && s.tool === tool).map((s) => s.seconds);
    return xs.length ? { median_s: round(median(xs)), runs: xs.length, min_s: round(Math.min(...xs)), max_s: round(Math.max(...xs)) } : null;
  };
  startup.push({ tool, version: med('start-version'), plan_one_node: med('start-plan') });
}
const reference = {
  note: "the issue's reference measurements on this kind of machine (Ansible and floor only)",
  plan: { 10: { ansible: 2.9, floor: 0.6 }, 50: { ansible: 12.0, floor: 2.8 }, 100: { ansible: 27.6, floor: 6.2 } },
  apply: { 10: { ansible: 25.2, floor: 18.8 } },
};

const json = { meta, results, targets, plan_marginal_cost: slopes, variant_comparison: variantComparison, startup, reference, samples };
writeFileSync(path.join(outDir, 'results.json'), JSON.stringify(json, null, 2) + '\n');

// ---------------------------------------------------------------- markdown
const fmt = (x, d = 2) => (x === null || x === undefined ? '–' : x.toFixed(d));
const lines = [];
lines.push('# rollout benchmark results', '');
lines.push(`Generated by \`npm run bench\` (bench/run.sh) from ${meta.started} to ${meta.finished ?? '(unfinished)'}.`);
lines.push(
  `Machine: ${meta.cpus} CPU (${meta.cpu_model}), ${meta.mem_mib} MiB, Linux ${meta.kernel}; ${[meta.node, meta.ansible, meta.openssh].filter(Boolean).join(', ')}.`,
);
lines.push(`rollout under test: ${meta.rollout}.`);
// Samples merged from more than one invocation say so (meta `note`).
if (meta.note) lines.push(meta.note);
for (const l of variantLabels) lines.push(`Variant \`rollout [${l}]\`: ${meta[`variant_${l}`] ?? '(commit not recorded)'}; run exactly like rollout (same inventories, flags and checks, in the same rotation).`);
if (meta.tools && !['floor', 'ansible'].every((t) => meta.tools.split(/\s+/).includes(t))) {
  lines.push(`Tools run (BENCH_TOOLS): ${meta.tools}; no samples of ${['floor', 'ansible'].filter((t) => !meta.tools.split(/\s+/).includes(t)).map((t) => (t === 'floor' ? 'the OpenSSH floors' : 'Ansible')).join(' or ')}, so no ratios or overheads against them.`);
}
lines.push(
  `Lab: real systemd-nspawn nodes (sshd, systemd 252, journald; simulated minkms with start-delay-ms=${meta.start_delay_ms}); ${meta.runs} timed run(s) per tool and size after an untimed warm-up, the tool order rotated between runs; \`lab.sh reset all\` (untimed) before every apply run.`,
);
const boots = sizes.map((n) => (meta[`boot_s_${n}`] ? `N=${n} ${Number(meta[`boot_s_${n}`]).toFixed(1)} s` : null)).filter(Boolean);
if (boots.length) lines.push(`Lab boot (lab.sh up N, not part of any timing): ${boots.join(', ')}.`);
if (rtts.some((r) => r > 0)) lines.push(`Round-trip times: ${rtts.map((r) => `${r} ms`).join(', ')}; above 0 every tool reaches the nodes' sshd through bench/relay.mjs (RTT/2 each way, plus 1.5 RTT before each new connection's server side accepts, as a TCP handshake; rollout's own Vault requests are not delayed).`);
lines.push(samples.some((s) => s.vitest) ? '**The test suite (vitest) ran during some samples, even after retries (column "disturbed"): those timings are not reliable.**' : 'The test suite (vitest, tsc) did not run during any kept sample (disturbed samples were taken again).');
lines.push('');
lines.push('| RTT ms | N | op | tool | runs | median s | spread (min–max s) | ratio to rollout | ratio to floor | overhead/node vs floor (ms) | peak RSS (MB)¹ | disturbed |');
lines.push('|---:|---:|---|---|---:|---:|---|---:|---:|---:|---:|---:|');
for (const r of results) {
  lines.push(
    `| ${r.rtt_ms} | ${r.n} | ${r.op} | ${r.tool} | ${r.runs} | ${fmt(r.median_s)} | ${fmt(r.min_s)}–${fmt(r.max_s)} (${fmt(r.spread_pct, 0)}%) | ${r.ratio_to_rollout === null ? '–' : `${fmt(r.ratio_to_rollout)}x`} | ${r.ratio_to_floor === null ? '–' : `${fmt(r.ratio_to_floor)}x`} | ${isFloor(r.tool) ? '–' : fmt(r.overhead_per_node_ms, 0)} | ${fmt(r.peak_rss_mb, 1)} | ${r.vitest_during_runs || ''} |`,
  );
}
lines.push('');
lines.push('¹ GNU time `%M`: for rollout (one process) its peak RSS; for Ansible and the floor only the largest single process (an Ansible fork, one `ssh`), not their total.');
lines.push('');
lines.push('- plan: `rollout plan --parallel N` (both phases, `disableLocalHsm: true`), and with its default parallelism 16 where N > 16; `ansible-playbook --check --diff -f N` of bench/ansible/plan.yml (blockinfile + lineinfile state=absent, pipelining, no facts); the floor is bench/floor-plan.sh (`xargs -P N ssh … cat` of both files).');
lines.push('- apply: `rollout apply --yes --parallel N` (phase 1 only: one edit and one gated restart per node, with plan, lock, preflight, backups and checks); bench/ansible/apply.yml (serial: 1; cursor, `systemctl restart minkms`, wait for the ready line); the floor is bench/floor-apply.sh (one `ssh` per node: cursor, restart, poll for the ready line every 50 ms).');
lines.push('- Every tool connects fresh (OpenSSH and Ansible: `ControlMaster=no`, no ControlPersist; `KexAlgorithms=curve25519-sha256`, which the nodes and rollout\'s ssh2 use too).');
lines.push('- overhead/node = (median − floor median) / N, over the floor of the same work on the nodes: for rollout\'s apply, which leaves every node on the new config, "openssh floor (new config)" (the same floor script run on nodes that already hold the new config, so each start also logs in to Vault and unseals, as after rollout\'s restart); for Ansible\'s apply.yml (a restart on the old config) and for plan, "openssh floor".');
lines.push('');
if (rtts.length > 1) {
  // The same rows side by side, one column per RTT: median s (ratio to the floor of that RTT).
  lines.push('## By round-trip time', '');
  lines.push('Median seconds, and in brackets the ratio to the floor of the same RTT (rollout\'s apply: the new-config floor).', '');
  lines.push(`| N | op | tool | ${rtts.map((r) => `RTT ${r} ms`).join(' | ')} |`);
  lines.push(`|---:|---|---|${rtts.map(() => '---:').join('|')}|`);
  for (const op of OPS) for (const n of sizes) for (const tool of TOOL_ORDER) {
    const cells = rtts.map((rtt) => row(op, n, tool, rtt));
    if (!cells.some(Boolean)) continue;
    lines.push(`| ${n} | ${op} | ${tool} | ${cells.map((r) => (r ? `${fmt(r.median_s)}${r.ratio_to_floor === null ? '' : ` (${fmt(r.ratio_to_floor)}x)`}` : '–')).join(' | ')} |`);
  }
  lines.push('');
}
const withCpu = results.filter((r) => r.cpu_machine_s !== null);
if (withCpu.length) {
  // On a fleet each node's work runs on that node's own cores; here every node
  // shares the machine's, so CPU the nodes spend at once becomes waiting.
  const cores = Number(meta.cpus) || 2;
  lines.push('## CPU: what the lab\'s shared cores carry', '');
  lines.push(`Medians per sample. "tool": the tool's own CPU time (GNU time user + system, with the children it waited for: the floor's \`ssh\`es, Ansible's forks). "machine": the whole machine's busy CPU time over the same span (/proc/stat): every lab node's processes (sshd, shells, systemctl, journalctl, curl, systemd and journald, the simulated KMS), the Vault double, the relay and the tool. "busy": machine CPU / (wall × ${cores} cores). "nodes over floor, per node": (machine − tool) − the same for the floor of the same work, divided by N: what the tool makes the nodes (and the lab's doubles) do beyond the floor, which a fleet spreads over N machines and the lab runs on ${cores} cores.`, '');
  lines.push(`"extra CPU / ${cores} cores": (machine − the floor's machine) / ${cores}, the least time the lab's cores need for that extra work, beside "wall over floor": when it is as large, the whole gap to the floor can be the lab's queueing.`, '');
  lines.push(`| RTT ms | N | op | tool | median s | CPU s: tool | CPU s: machine | busy | nodes over floor, per node (CPU ms) | wall over floor s | extra CPU / ${cores} cores s |`, '|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of withCpu) {
    const fl = isFloor(r.tool) ? null : row(r.op, r.n, r.overhead_over, r.rtt_ms);
    const has = fl && fl.cpu_machine_s !== null;
    const rest = (x) => x.cpu_machine_s - (x.cpu_tool_s ?? 0);
    const over = has && r.cpu_tool_s !== null && fl.cpu_tool_s !== null ? (1000 * (rest(r) - rest(fl))) / r.n : null;
    const cells = has ? `${fmt(r.median_s - fl.median_s)} | ${fmt((r.cpu_machine_s - fl.cpu_machine_s) / cores)}` : '– | –';
    lines.push(`| ${r.rtt_ms} | ${r.n} | ${r.op} | ${r.tool} | ${fmt(r.median_s)} | ${fmt(r.cpu_tool_s)} | ${fmt(r.cpu_machine_s)} | ${fmt((100 * r.cpu_machine_s) / (r.median_s * cores), 0)}% | ${over === null ? '–' : fmt(over, 0)} | ${cells} |`);
  }
  lines.push('');
}
if (variantComparison.length) {
  lines.push('## Variants', '');
  lines.push('Each variant against rollout in the same invocation (same RTT, op and N; medians). Δ = variant − rollout; per node = Δ / N, which for apply (one node restarted at a time) is the difference on each node\'s turn. A ratio below 1 means the variant is faster.', '');
  lines.push('| RTT ms | op | N | rollout median s (min–max) | variant | variant median s (min–max) | Δ ms | Δ ms per node (apply: per node turn) | ratio | disturbed |');
  lines.push('|---:|---|---:|---:|---|---:|---:|---:|---:|---:|');
  const cell = (r) => (r ? `${fmt(r.median_s)} (${fmt(r.min_s)}–${fmt(r.max_s)})` : '–');
  for (const c of variantComparison) {
    const sign = (x, d) => (x === null ? '–' : `${x > 0 ? '+' : ''}${fmt(x, d)}`);
    lines.push(
      `| ${c.rtt_ms} | ${c.op} | ${c.n} | ${cell(row(c.op, c.n, 'rollout', c.rtt_ms))} | ${c.variant} | ${cell(row(c.op, c.n, `rollout [${c.variant}]`, c.rtt_ms))} | ${sign(c.diff_ms, 0)} | ${sign(c.diff_ms_per_node, 1)} | ${c.ratio === null ? '–' : `${fmt(c.ratio, 3)}x`} | ${c.disturbed_samples || ''} |`,
    );
  }
  lines.push('');
}
if (startup.length) {
  lines.push('## Start-up', '');
  lines.push('`rollout --version`, and `rollout plan` of one node over loopback (lab node 1), each run through the package\'s `bin` after one untimed run; the median of the runs (min–max).', '');
  lines.push('| build, Node.js | runs | --version ms | plan, one node ms |', '|---|---:|---:|---:|');
  const ms = (x) => (x ? `${fmt(x.median_s * 1000, 0)} (${fmt(x.min_s * 1000, 0)}–${fmt(x.max_s * 1000, 0)})` : '–');
  for (const st of startup) lines.push(`| ${st.tool} | ${st.version?.runs ?? '–'} | ${ms(st.version)} | ${ms(st.plan_one_node)} |`);
  lines.push('');
}
lines.push('## Targets (from the issues; the first ones at RTT 0 unless named)', '');
lines.push('| target | goal | measured | status |', '|---|---|---|---|');
for (const t of targets) lines.push(`| ${t.target} | ${t.goal} | ${t.measured ?? '–'} | ${t.status} |`);
lines.push('');
if (slopes.length) {
  lines.push('## plan: cost of each extra node', '');
  lines.push('| RTT ms | tool | from N | to N | ms per extra node |', '|---:|---|---:|---:|---:|');
  for (const s of slopes) lines.push(`| ${s.rtt_ms} | ${s.tool} | ${s.from} | ${s.to} | ${fmt(s.ms_per_extra_node, 0)} |`);
  lines.push('');
}
lines.push('## Reference (the issue\'s measurements on this kind of machine)', '');
lines.push('| N | op | Ansible s | floor s |', '|---:|---|---:|---:|');
for (const op of OPS) for (const [n, v] of Object.entries(reference[op])) lines.push(`| ${n} | ${op} | ${v.ansible} | ${v.floor} |`);
lines.push('');
lines.push('Every sample is in results.json (`samples`).');
const md = lines.join('\n') + '\n';
writeFileSync(path.join(outDir, 'results.md'), md);
process.stdout.write(md);
