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
    { node, status: 'ready', phases: [{ name: 'vault-hsm', description: '', unchanged: [], restart: { kind: 'restart', unit: 'minkms' }, changes: [{ kind: 'file', file: 'config', path: '/etc/minkms/config.yaml', before: CONFIG, after: AFTER, beforeSha256: before, afterSha256: after, uid: 0, gid: 0, mode: 0o640 }] }] },
    { node: { ...node, name: 'kms-2' }, status: 'ready', phases: [{ name: 'vault-hsm', description: '', unchanged: [], restart: { kind: 'restart', unit: 'minkms' }, changes: [] }] },
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

describe('the run report of a node that logs escape sequences', () => {
  const redact = createRedactor({ secrets: [SECRET], yamlKeys: ['secret', 'token'], envKeys: [], logPatterns: [] });
  const line = 'Error: \x1b]0;pwned-title\x07 \x1b]52;c;cHduZWQ=\x07 \x1b[2K\rforged ok\n```\n[click](https://evil.example)';
  const config = `${CONFIG}extra:\n  token: |\n    tok-line-one-77f1\n    tok-line-two-0b3e\n# \x1b]0;title\x07 end\n`;
  const ready = plan.nodes[0] as Extract<Plan['nodes'][number], { status: 'ready' }>;
  const evil: Plan = { ...plan, nodes: [{ ...ready, phases: [{ ...ready.phases[0]!, changes: [{ kind: 'file', file: 'config', path: '/etc/minkms/\x1b]0;p\x07.yaml', before: config, after: `${config}hsm: {}\n`, beforeSha256: before, afterSha256: after, uid: 0, gid: 0, mode: 0o640 }] }] }] };
  const withLine: PhaseOutcome[] = [{ ...outcomes[0]!, gate: { ...outcomes[0]!.gate!, verdict: { ...outcomes[0]!.gate!.verdict, reason: 'failure line \x1b[2K', evidence: [{ ...outcomes[0]!.gate!.verdict.evidence[0]!, message: line }] } } }];
  const report = buildReport({ state, plan: evil, outcomes: withLine, exitCode: 1, message: `kms-1 failed:\n    ${line}`, finishedAt: new Date('2026-11-26T10:00:09Z'), version: '0.1.0', inventory: { file: '/inv/prod.yaml', sha256: 'a'.repeat(64) }, playbook: { file: '/pb.yaml', sha256: 'b'.repeat(64) }, redact });
  const md = renderReportMarkdown(report);

  it('holds no control character in report.md or any report.json string; the sequences are shown escaped', () => {
    // eslint-disable-next-line no-control-regex
    const control = /[\x00-\x08\x0b-\x1f\x7f-\x9f]|\r(?!\n)/;
    expect(md).not.toMatch(control);
    const strings: string[] = [];
    JSON.stringify(report, (_k, v: unknown) => (typeof v === 'string' ? (strings.push(v), v) : v));
    expect(strings.filter((x) => control.test(x))).toEqual([]);
    expect(md).toContain('Error: \\x1b]0;pwned-title\\x07 \\x1b]52;c;cHduZWQ=\\x07 \\x1b[2K\\rforged ok');
    expect(report.diffs[0]!.path).toBe('/etc/minkms/\\x1b]0;p\\x07.yaml');
  });

  it('keeps a block-scalar token out, and a journal line cannot close its code fence', () => {
    expect(md).not.toMatch(/tok-line-(one|two)/);
    expect(JSON.stringify(report)).not.toMatch(/tok-line-(one|two)/);
    // The evidence holds a ``` line: its fence is longer, so the link stays inside it.
    const evidence = md.slice(md.indexOf('## Gate evidence'), md.indexOf('## Diffs'));
    expect(evidence).toMatch(/\n````\n[^\n]*Error: [^\n]*\n```\n\[click\]\(https:\/\/evil\.example\)\n````\n/);
  });
});

describe('backups that still hold a removed secret', () => {
  const KEY = 'hsm:aes256:c2VjcmV0LWhzbS1rZXktdGhhdC1pcy0zMi1ieXRlcw==';
  const ENV = `MINIO_KMS_HSM_KEY=${KEY}\nMINIO_KMS_VOLUME=/mnt/minio-kms\n`;
  const ENV_AFTER = 'MINIO_KMS_VOLUME=/mnt/minio-kms\n';
  const envFile = { path: '/etc/default/minkms', beforeSha256: sha256(Buffer.from(ENV)), afterSha256: sha256(Buffer.from(ENV_AFTER)), backup: '/var/backups/rollout/R/etc/default/minkms', uid: 0, gid: 0, mode: 0o640 };
  const change = { kind: 'file' as const, file: 'env', path: envFile.path, before: ENV, after: ENV_AFTER, beforeSha256: envFile.beforeSha256, afterSha256: envFile.afterSha256, uid: 0, gid: 0, mode: 0o640 };
  const phase = { name: 'disable-local-hsm', description: '', unchanged: [], restart: { kind: 'restart' as const, unit: 'minkms' }, changes: [change] };
  const p2: Plan = { playbookName: 'minkms-vault-hsm', phases: [{ name: 'disable-local-hsm', description: '', enabled: true }], nodes: [{ node, status: 'ready', phases: [phase] }, { node: { ...node, name: 'kms-2' }, status: 'ready', phases: [phase] }] };
  const steps = (status: 'done' | 'planned') => [
    { node: 'kms-1', phase: 'disable-local-hsm', restartUnit: 'minkms', files: [envFile], status: 'done' as const, updatedAt: '' },
    { node: 'kms-2', phase: 'disable-local-hsm', restartUnit: 'minkms', files: [envFile], status, updatedAt: '' },
  ];
  const redact = createRedactor({ secrets: [], yamlKeys: [], envKeys: ['MINIO_KMS_HSM_KEY'], logPatterns: [] });
  const build = (status: 'done' | 'planned') =>
    buildReport({ state: { ...state, status: 'done', steps: steps(status) }, plan: p2, outcomes: [], exitCode: 0, message: null, finishedAt: new Date(), version: '0.1.0', inventory: { file: '/inv/prod.yaml', sha256: 'a' }, playbook: { file: '/pb.yaml', sha256: 'b' }, redact, envKeys: ['MINIO_KMS_HSM_KEY'] });

  it('names each node the run wrote to whose backup holds the key it removed, and says how to remove it', () => {
    const report = build('planned');
    expect(report.backupsHoldingSecrets).toEqual([{ node: 'kms-1', path: '/etc/default/minkms', backup: envFile.backup, keys: ['MINIO_KMS_HSM_KEY'] }]);
    const md = renderReportMarkdown(report);
    expect(md).toContain('## Backups that still hold a removed secret');
    expect(md).toContain('- kms-1: `/var/backups/rollout/R/etc/default/minkms` (of `/etc/default/minkms`) holds MINIO_KMS_HSM_KEY');
    expect(md).toContain('`rollout prune INVENTORY`');
    expect(`${md}${JSON.stringify(report)}`).not.toContain(KEY);
    expect(build('done').backupsHoldingSecrets.map((b) => b.node)).toEqual(['kms-1', 'kms-2']);
  });
});
