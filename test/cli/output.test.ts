import { describe, expect, it, vi } from 'vitest';
import { colorDiff, Output } from '../../src/cli/output.js';
import { createRedactor } from '../../src/util/redact.js';
import { captureOutput } from '../helpers/capture-output.js';

const SECRET = 'se"cr\\et-7f3a9c1e';

const capture = captureOutput;

describe('Output modes', () => {
  it('json: one parseable event per line, every nested string redacted (even a secret JSON would escape)', () => {
    const lines = capture();
    const io = new Output();
    io.mode = 'json';
    io.useRedactor(createRedactor({ secrets: [SECRET], yamlKeys: [], envKeys: [], logPatterns: [] }));
    io.event('node-failed', { node: 'kms-2', gate: { evidence: [{ line: `login with ${SECRET} refused` }] } });
    io.out(`\nplain text with ${SECRET}\n`);
    io.err(`error: ${SECRET}`);
    const events = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.map((e) => e.event)).toEqual(['node-failed', 'message', 'error']);
    expect(events[0]).toMatchObject({ node: 'kms-2', gate: { evidence: [{ line: 'login with <redacted> refused' }] } });
    expect(events[1]).toMatchObject({ text: 'plain text with <redacted>' });
    expect(lines.join('')).not.toContain('7f3a9c1e');
  });

  it('quiet: informational lines dropped, the outcome line kept; human: events are not printed', () => {
    const lines = capture();
    const io = new Output();
    io.mode = 'quiet';
    io.out('Preflight checks: ...');
    io.result('Rollout complete.');
    io.mode = 'human';
    io.event('node-done', { node: 'kms-1' });
    expect(lines).toEqual(['Rollout complete.\n']);
  });

  it('escapes control characters from a node on every path, even before the redactor is known', () => {
    const lines = capture();
    const errs: string[] = [];
    vi.mocked(process.stderr.write).mockImplementation((chunk: string | Uint8Array) => {
      errs.push(String(chunk));
      return true;
    });
    const io = new Output();
    const nodeText = 'kms-1: \x1b]0;pwned\x07 \x1b]52;c;cHduZWQ=\x07 \x1b[2K\rok\u009b2J';
    io.out(nodeText);
    io.result(nodeText);
    io.err(nodeText);
    io.mode = 'json';
    io.event('step', { text: nodeText, gate: { evidence: [{ line: nodeText }] } });
    const all = [...lines, ...errs].join('');
    expect(all).not.toMatch(/[\x1b\x07\x9b]|\r(?!\n)/);
    expect(lines[0]).toBe('kms-1: \\x1b]0;pwned\\x07 \\x1b]52;c;cHduZWQ=\\x07 \\x1b[2K\\rok\\x9b2J\n');
    // The JSON string holds the escape text, not an encoded ESC a consumer would decode and print.
    expect(lines.at(-1)).not.toContain('\\u001b');
    expect((JSON.parse(lines.at(-1)!) as { text: string }).text).toContain('\\x1b]0;pwned');
  });

  it('diff: node text made inert, then rollout\'s own colour added', () => {
    const lines = capture();
    const io = new Output();
    io.color = true;
    io.diff('+# \x1b[32mfake green\x1b]0;t\x07\n-old');
    expect(lines.join('')).toBe('\x1b[32m+# \\x1b[32mfake green\\x1b]0;t\\x07\x1b[0m\n\x1b[31m-old\x1b[0m\n');
    io.color = false;
    io.mode = 'quiet';
    io.diff('+x');
    expect(lines).toHaveLength(1);
  });

  it('colours added, removed and hunk lines only', () => {
    const out = colorDiff('=== kms-1\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n context');
    expect(out.split('\n')).toEqual(['\x1b[1m=== kms-1\x1b[0m', '\x1b[1m--- a/x\x1b[0m', '\x1b[1m+++ b/x\x1b[0m', '\x1b[36m@@ -1 +1 @@\x1b[0m', '\x1b[31m-old\x1b[0m', '\x1b[32m+new\x1b[0m', ' context']);
  });
});
