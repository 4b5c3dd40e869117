// The change record of one apply run, written on the operator's machine: who,
// when, with what inputs, the reviewed diffs, and per node what each file was
// before and after and the journal lines that decided each gate. Built from
// data (pure), then written as report.json (for tools) and report.md (for a
// change ticket). Everything in it has passed the redactor, and no string in
// it holds a control character (a file name from a node's env file included).
import path from 'node:path';
import type { PhaseOutcome } from '../apply/apply-node.js';
import { renderFileChange } from '../plan/render.js';
import type { Plan } from '../plan/types.js';
import { readEnvValue } from '../tasks/env-file.js';
import type { KmsBackup, RunState } from '../state/run-state.js';
import { writeFileDurably } from '../util/durable-file.js';
import { escapeControls, type Redactor } from '../util/redact.js';

/** One node and phase in the report. */
export type ReportStep = {
  node: string;
  phase: string;
  /** The run record's final word on this step (done, rolled-back, planned = never touched, ...). */
  status: string;
  files: Array<{ path: string; beforeSha256: string; afterSha256: string; backup: string }>;
  gate: null | {
    verdict: string;
    reason: string;
    startedAt: string;
    decidedAt: string;
    seconds: number;
    evidence: Array<{ at: string; line: string }>;
  };
};

/** report.json: schema version 1. */
export type AuditReport = {
  schema: 'rollout-report/v1';
  runId: string;
  outcome: string;
  exitCode: number;
  message: string | null;
  ranBy: { user: string; host: string };
  startedAt: string;
  finishedAt: string;
  rolloutVersion: string;
  inventory: { file: string; sha256: string };
  playbook: { file: string; sha256: string; name: string };
  nodes: string[];
  diffs: Array<{ node: string; phase: string; path: string; diff: string }>;
  steps: ReportStep[];
  /** Backups on the nodes that still hold a secret the run removed from the file (see secretsLeftInBackups). */
  backupsHoldingSecrets: SecretInBackup[];
  /** The cluster's state backup taken before the first change (vars.cluster.backup); null: none taken. */
  kmsBackup: KmsBackup | null;
};

/** A backup that still holds secret keys the run removed from its file. */
export type SecretInBackup = { node: string; path: string; backup: string; keys: string[] };

/**
 * Pure. Where this run's backups still hold a secret it removed: a file whose
 * old content assigned one of `envKeys` (MINIO_KMS_HSM_KEY) and whose new one
 * does not, on a node the run wrote to. The backup is the old file, so the key
 * stays on the node until `rollout prune` removes it.
 */
export function secretsLeftInBackups(plan: Plan, state: RunState, envKeys: readonly string[]): SecretInBackup[] {
  const found: SecretInBackup[] = [];
  for (const n of plan.nodes) {
    if (n.status !== 'ready') continue;
    for (const p of n.phases) {
      const step = state.steps.find((s) => s.node === n.node.name && s.phase === p.name);
      if (!step || step.status === 'planned') continue;
      for (const c of p.changes) {
        const keys = envKeys.filter((k) => readEnvValue(c.before, k) !== null && readEnvValue(c.after, k) === null);
        const file = step.files.find((f) => f.path === c.path);
        if (keys.length > 0 && file) found.push({ node: n.node.name, path: c.path, backup: file.backup, keys });
      }
    }
  }
  return found;
}

/** What buildReport needs from the run. */
export type ReportInput = {
  state: RunState;
  plan: Plan;
  outcomes: readonly PhaseOutcome[];
  exitCode: number;
  message: string | null;
  finishedAt: Date;
  version: string;
  inventory: { file: string; sha256: string };
  playbook: { file: string; sha256: string };
  redact: Redactor;
  /** The playbook's secret env keys (secrets.envKeys): backups still holding one the run removed are named. */
  envKeys?: readonly string[];
};

/** Pure. The report as data; every text field redacted, every string's control characters escaped. */
export function buildReport(input: ReportInput): AuditReport {
  return inert(reportData(input));
}

function reportData(input: ReportInput): AuditReport {
  const { state, plan, redact } = input;
  const diffs = plan.nodes.flatMap((n) =>
    n.status !== 'ready' ? [] : n.phases.flatMap((p) => p.changes.map((c) => ({ node: n.node.name, phase: p.name, path: c.path, diff: renderFileChange(n.node.name, c, redact) }))),
  );
  const steps = state.steps.map((s): ReportStep => {
    // The last outcome of a step is its gate (a resumed run may have several).
    const o = [...input.outcomes].reverse().find((x) => x.node === s.node && x.phase === s.phase);
    const g = o?.gate;
    return {
      node: s.node,
      phase: s.phase,
      status: s.status,
      files: s.files.map((f) => ({ path: f.path, beforeSha256: f.beforeSha256, afterSha256: f.afterSha256, backup: f.backup })),
      gate: g
        ? {
            verdict: g.verdict.status,
            reason: redact(g.verdict.reason),
            startedAt: new Date(g.startedAt).toISOString(),
            decidedAt: new Date(g.decidedAt).toISOString(),
            seconds: Number(((g.decidedAt - g.startedAt) / 1000).toFixed(3)),
            evidence: g.verdict.evidence.map((e) => ({ at: new Date(e.realtimeUs / 1000).toISOString(), line: redact(e.message) })),
          }
        : null,
    };
  });
  return {
    schema: 'rollout-report/v1',
    runId: state.runId,
    outcome: state.status,
    exitCode: input.exitCode,
    message: input.message === null ? null : redact(input.message),
    ranBy: { user: state.user, host: state.host },
    startedAt: state.startedAt,
    finishedAt: input.finishedAt.toISOString(),
    rolloutVersion: input.version,
    inventory: input.inventory,
    playbook: { ...input.playbook, name: plan.playbookName },
    nodes: plan.nodes.map((n) => n.node.name),
    diffs,
    steps,
    backupsHoldingSecrets: secretsLeftInBackups(plan, state, input.envKeys ?? []),
    kmsBackup: state.kmsBackup ?? null,
  };
}

// Every string escaped (escapeControls): paths and names are not redacted, yet may come from a node.
function inert<T>(v: T): T {
  if (typeof v === 'string') return escapeControls(v) as T;
  if (Array.isArray(v)) return v.map(inert) as T;
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, inert(x)])) as T;
  return v;
}

// A code fence longer than any run of backticks in its text, so no line from a
// node can close it and have the rest read as Markdown (links, images).
function fenced(text: string, info = ''): string[] {
  const longest = Math.max(2, ...(text.match(/`+/g) ?? []).map((r) => r.length));
  const fence = '`'.repeat(longest + 1);
  return [`${fence}${info}`, text, fence];
}

const short = (sha: string) => sha.slice(0, 12);

/** Pure. The report as Markdown for a change record. */
export function renderReportMarkdown(r: AuditReport): string {
  const out: string[] = [];
  out.push(`# rollout run ${r.runId}: ${r.outcome}`, '');
  out.push('| | |', '| --- | --- |');
  out.push(`| outcome | **${r.outcome}** (exit ${r.exitCode}) |`);
  out.push(`| run by | ${r.ranBy.user}@${r.ranBy.host} |`);
  out.push(`| started | ${r.startedAt} |`, `| finished | ${r.finishedAt} |`);
  out.push(`| rollout | ${r.rolloutVersion} |`);
  out.push(`| inventory | \`${r.inventory.file}\` sha256 \`${r.inventory.sha256}\` |`);
  out.push(`| playbook | ${r.playbook.name}, \`${r.playbook.file}\` sha256 \`${r.playbook.sha256}\` |`);
  out.push(`| nodes | ${r.nodes.join(', ')} |`);
  if (r.kmsBackup) out.push(`| KMS backup | ${r.kmsBackup.node}: \`${r.kmsBackup.path}\` sha256 \`${r.kmsBackup.sha256}\` (${r.kmsBackup.bytes} bytes, ${r.kmsBackup.at}) |`);
  out.push('');
  if (r.message) out.push('## Why it stopped', '', ...fenced(r.message), '');
  out.push('## Nodes', '', '| node | phase | result | gate | files (sha256 before → after) |', '| --- | --- | --- | --- | --- |');
  for (const s of r.steps) {
    const gate = s.gate ? `${s.gate.verdict} in ${s.gate.seconds.toFixed(1)} s` : '–';
    const files = s.files.map((f) => `\`${f.path}\` ${short(f.beforeSha256)} → ${short(f.afterSha256)}`).join('<br>');
    out.push(`| ${s.node} | ${s.phase} | ${s.status} | ${gate} | ${files} |`);
  }
  out.push('');
  const gated = r.steps.filter((s) => s.gate);
  if (gated.length > 0) {
    out.push('## Gate evidence', '');
    for (const s of gated) {
      out.push(`### ${s.node} (${s.phase}): ${s.gate!.verdict}, ${s.gate!.reason}`, '', `restart asked at ${s.gate!.startedAt}, decided at ${s.gate!.decidedAt}`, '');
      out.push(...fenced(s.gate!.evidence.length ? s.gate!.evidence.map((e) => `${e.at} ${e.line}`).join('\n') : '(no journal line of the new process)'), '');
    }
  }
  if (r.backupsHoldingSecrets.length > 0) {
    out.push('## Backups that still hold a removed secret', '');
    out.push('The backups are the files as they were, so these still hold what the run removed. Once the run is verified, `rollout prune INVENTORY` removes them (rollback then has nothing to restore).', '');
    for (const b of r.backupsHoldingSecrets) out.push(`- ${b.node}: \`${b.backup}\` (of \`${b.path}\`) holds ${b.keys.join(', ')}`);
    out.push('');
  }
  out.push('## Diffs (secrets redacted)', '');
  for (const d of r.diffs) out.push(`### ${d.node}: ${d.path} (${d.phase})`, '', ...fenced(d.diff.trimEnd(), 'diff'), '');
  out.push('Full sha256 of every file, and all of the above as data: report.json beside this file.', '');
  return out.join('\n');
}

/** Where a run's report goes: `<state dir>/reports/<run id>/`. */
export function reportDir(stateDir: string, runId: string): string {
  return path.join(stateDir, 'reports', runId);
}

/** Writes report.json and report.md durably; returns the directory. */
export async function writeReport(dir: string, report: AuditReport): Promise<string> {
  await writeFileDurably(path.join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  await writeFileDurably(path.join(dir, 'report.md'), renderReportMarkdown(report));
  return dir;
}
