import { describe, expect, it } from 'vitest';
import type { PhaseOutcome } from '../../src/apply/apply-node.js';
import type { Plan } from '../../src/plan/types.js';
import { buildReport, renderReportMarkdown } from '../../src/report/audit-report.js';
import type { RunState } from '../../src/state/run-state.js';
import { createRedactor } from '../../src/util/redact.js';
import { sha256 } from '../../src/util/sha256.js';
import { CONFIG, SECRET, node } from '../helpers/plan-inputs.js';

const AFTER = `${CONFIG}hsm:\n  vault:\n    approle:\n      secret: ${SECRET}\n`;
const before = sha256(Buffer.from(CONFIG));
const after = sha256(Buffer.from(AFTER));
const plan: Plan = {
  playbookName: 'minkms-vault-hsm',
  phases: [{ name: 'vault-hsm', description: '', enabled: true }],
  nodes: [
    { node, status: 'ready', phases: [{ name: 'vault-hsm', description: '', unchanged: [], restartUnit: 'minkms', changes: [{ file: 'config', path: '/etc/minkms/config.yaml', before: CONFIG, after: AFTER, beforeSha256: before, afterSha256: after, uid: 0, gid: 0, mode: 0o640 }] }] },
    { node: { ...node, name: 'kms-2' }, status: 'ready', phases: [{ name: 'vault-hsm', description: '', unchanged: [], restartUnit: 'minkms', changes: [] }] },
  ],
};
const file = { path: '/etc/minkms/config.yaml', beforeSha256: before, afterSha256: after, backup: '/var/backups/rollout/R/etc/minkms/config.yaml', uid: 0, gid: 0, mode: 0o640 };
const state: RunState = {
  version: 1, runId: 'R', inventory: '/inv/prod.yaml', startedAt: '2026-11-26T10:00:00.000Z', user: 'alice', host: 'ops-1', status: 'stopped',
  steps: [{ node: 'kms-1', phase: 'vault-hsm', restartUnit: 'minkms', files: [file], status: 'rolled-back', updatedAt: '' }],
};
const outcomes: PhaseOutcome[] = [{
  node: 'kms-1', phase: 'vault-hsm', status: 'applied', files: [file],
  gate: {
    unreachable: false, startedAt: Date.parse('2026-11-26T10:00:01Z'), decidedAt: Date.parse('2026-11-26T10:00:03.5Z'),
    verdict: { status: 'failed', reason: 'a failure line was logged', evidence: [{ cursor: 'c', realtimeUs: Date.parse('2026-11-26T10:00:03Z') * 1000, message: `Error: login with secret ${SECRET} refused`, fromManager: false, invocationId: 'new' }] },
  },
}];

describe('the run report', () => {
  const redact = createRedactor({ secrets: [SECRET], yamlKeys: ['secret'], envKeys: [], logPatterns: [] });
  const report = buildReport({ state, plan, outcomes, exitCode: 1, message: `kms-1 failed its gate (${SECRET})`, finishedAt: new Date('2026-11-26T10:00:09Z'), version: '0.1.0', inventory: { file: '/inv/prod.yaml', sha256: 'a'.repeat(64) }, playbook: { file: '/pb.yaml', sha256: 'b'.repeat(64) }, redact });
  const md = renderReportMarkdown(report);

  it('holds per node the file checksums, the result and the gate with its timing and evidence', () => {
    expect(report.steps[0]).toMatchObject({ node: 'kms-1', status: 'rolled-back', files: [{ beforeSha256: before, afterSha256: after }], gate: { verdict: 'failed', seconds: 2.5, startedAt: '2026-11-26T10:00:01.000Z' } });
    expect(report.diffs).toHaveLength(1);
    expect(md).toContain(`| kms-1 | vault-hsm | rolled-back | failed in 2.5 s | \`/etc/minkms/config.yaml\` ${before.slice(0, 12)} → ${after.slice(0, 12)} |`);
    expect(md).toContain('| run by | alice@ops-1 |');
    expect(md).toContain('2026-11-26T10:00:03.000Z Error: login with secret <redacted> refused');
    expect(md).toContain('## Why it stopped');
  });

  it('never carries a secret: diffs, evidence and the message are redacted', () => {
    expect(`${md}${JSON.stringify(report)}`).not.toContain(SECRET);
    expect(report.diffs[0]!.diff).toContain('+      secret: <redacted>');
  });
});
