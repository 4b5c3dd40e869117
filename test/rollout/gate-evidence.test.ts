import { describe, expect, it } from 'vitest';
import { parseJournalLine } from '../../src/rollout/journal.js';
import { renderGateEvidence } from '../../src/rollout/restart-gate.js';
import { createRedactor } from '../../src/util/redact.js';

const redact = createRedactor({ secrets: [], yamlKeys: ['secret'], envKeys: ['MINIO_KMS_HSM_KEY'], logPatterns: ['API Key\\s+(\\S+)'] });

// A journal line as journald hands it over: a message with escapes is an array of bytes.
const entry = parseJournalLine(JSON.stringify({
  __CURSOR: 'c1',
  __REALTIME_TIMESTAMP: String(Date.parse('2026-11-26T10:00:03Z') * 1000),
  _PID: '812',
  MESSAGE: [...Buffer.from('Error: \x1b]0;pwned-title\x07\x1b]52;c;cHduZWQ=\x07\x1b[2K\r=> Server is up and running API Key k1:Zm9v')],
}))!;

describe('renderGateEvidence (canary evidence, failure messages)', () => {
  it('shows a journal line\'s escape sequences as text and its secrets redacted', () => {
    const text = renderGateEvidence({ verdict: { status: 'failed', reason: 'a failure line was logged', evidence: [entry] }, unreachable: false, startedAt: 0, decidedAt: 1 }, redact);
    expect(text).toBe('    2026-11-26T10:00:03.000Z Error: \\x1b]0;pwned-title\\x07\\x1b]52;c;cHduZWQ=\\x07\\r=> Server is up and running API Key <redacted>');
    // eslint-disable-next-line no-control-regex
    expect(text).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/);
  });
});
