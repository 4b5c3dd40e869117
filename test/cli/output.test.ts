import { afterEach, describe, expect, it, vi } from 'vitest';
import { colorDiff, Output } from '../../src/cli/output.js';
import { createRedactor } from '../../src/util/redact.js';

const SECRET = 'se"cr\\et-7f3a9c1e';

function capture() {
  const lines: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  return lines;
}

afterEach(() => {
  vi.restoreAllMocks();
});

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

  it('colours added, removed and hunk lines only', () => {
    const out = colorDiff('=== kms-1\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n context');
    expect(out.split('\n')).toEqual(['\x1b[1m=== kms-1\x1b[0m', '\x1b[1m--- a/x\x1b[0m', '\x1b[1m+++ b/x\x1b[0m', '\x1b[36m@@ -1 +1 @@\x1b[0m', '\x1b[31m-old\x1b[0m', '\x1b[32m+new\x1b[0m', ' context']);
  });
});
