// What a node's files and journal hold reaches the operator's terminal and the
// run report only made inert: terminal escape sequences shown as text, and no
// line of a secret, even one written over several lines.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAB_SECRET, clearKnob, labHsmKey, onNode, resetLab, rollout, seedFile, serviceState, setKnob, writeInventory } from '../helpers/lab.js';

const TOKEN_A = 'tok-first-half-5d1e93c7';
const TOKEN_B = 'tok-second-half-a0c47b12';
// A window title, the clipboard (OSC 52), then an erased line overwritten after a carriage return.
const ESCAPES = '\x1b]0;pwned-title\x07 \x1b]52;c;cHduZWQ=\x07 \x1b[2K\rforged ok line';
const SHOWN = '\\x1b]0;pwned-title\\x07 \\x1b]52;c;cHduZWQ=\\x07 \\x1b[2K\\rforged ok line';
const LOGGED = 'Error: hsm \x1b]0;journal-title\x07 \x1b]52;c;cHduZWQ=\x07\rforged ready';

async function writeOnNode(file: string, text: string): Promise<void> {
  await onNode('kms-1', `printf %s ${Buffer.from(text).toString('base64')} | base64 -d > ${file}`);
}

function expectInert(text: string, secrets: readonly string[]): void {
  expect(text).not.toContain('\x1b');
  expect(text).not.toContain('\x07');
  expect(text).not.toMatch(/\r(?!\n)/);
  // Nor encoded in JSON, for a consumer to decode and print.
  expect(text).not.toContain('\\u001b');
  for (const s of secrets) expect(text).not.toContain(s);
}

describe('node text on the operator\'s terminal and in the report', () => {
  let key: string;
  let secrets: string[];
  beforeAll(async () => {
    await resetLab();
    key = labHsmKey();
    // The HSM key continued on a second line (systemd joins it); a folded token in the
    // config's last lines, its key line outside the diff's context; escapes in a comment.
    secrets = [LAB_SECRET, TOKEN_A, TOKEN_B, key, key.slice(0, 24), key.slice(24)];
    await writeOnNode('/etc/default/minkms', seedFile('kms-1', 'minkms.env').toString().replace(key, `${key.slice(0, 24)}\\\n${key.slice(24)}`));
    await writeOnNode('/etc/minkms/config.yaml', `${seedFile('kms-1', 'config.yaml').toString()}extra:\n  token: >-\n    ${TOKEN_A}\n    ${TOKEN_B}\n# note ${ESCAPES}\n`);
  });
  afterAll(async () => {
    clearKnob('kms-1', 'reject-vault');
    await resetLab();
  });

  it('plan, plan --out and plan --json show the escapes as text and no line of the continued key or the block-scalar token', async () => {
    const inventory = writeInventory({ nodes: ['kms-1'], disableLocalHsm: true });
    const out = path.join(path.dirname(inventory), 'reviewed.plan.json');
    const r = await rollout(['plan', inventory, '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(` # note ${SHOWN}\n+hsm:`);
    expect(r.stdout).toMatch(/-MINIO_KMS_HSM_KEY=<redacted(?::[0-9a-f]{6})?>\\\n-<redacted(?::[0-9a-f]{6})?>\n/);
    expectInert(r.stdout, secrets);
    const saved = readFileSync(out, 'utf8');
    expect((JSON.parse(saved) as { rendered: string }).rendered).toContain(SHOWN);
    expectInert(saved, secrets);
    const json = await rollout(['plan', inventory, '--json']);
    expect(json.code).toBe(0);
    expect(json.stdout).toContain(JSON.stringify(SHOWN).slice(1, -1));
    expectInert(json.stdout, secrets);
  });

  it('apply: a journal line with escapes, in the progress, the failure and report.md/report.json, is shown as text', async () => {
    const inventory = writeInventory({ nodes: ['kms-1'], disableLocalHsm: true });
    setKnob('kms-1', 'reject-vault', LOGGED);
    const r = await rollout(['apply', inventory, '--yes']);
    // Restored: back on its old files (the continued key joined by systemd), healthy.
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('kms-1 failed its gate after the change');
    expect((await serviceState('kms-1')).ActiveState).toBe('active');
    expect(r.stderr).toContain('Error: hsm \\x1b]0;journal-title\\x07 \\x1b]52;c;cHduZWQ=\\x07\\rforged ready');
    expectInert(r.stdout, secrets);
    expectInert(r.stderr, secrets);
    const dir = path.join(path.dirname(inventory), '.rollout', 'inventory', 'reports');
    const [run] = readdirSync(dir);
    const md = readFileSync(path.join(dir, run!, 'report.md'), 'utf8');
    const json = readFileSync(path.join(dir, run!, 'report.json'), 'utf8');
    expect(md).toContain('Error: hsm \\x1b]0;journal-title\\x07');
    expect(md).toContain(`# note ${SHOWN}`);
    expectInert(md, secrets);
    expectInert(json, secrets);
  });
});
