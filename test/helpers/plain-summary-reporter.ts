// Prints one uncoloured closing line, `tests: N passed, N failed[, N skipped]`,
// that CI logs and plain-text tools can read without parsing vitest's styled output.
import type { Reporter } from 'vitest/reporters';

type Task = { type: string; mode?: string; result?: { state?: string }; tasks?: Task[] };

function count(tasks: readonly Task[], into: { passed: number; failed: number; skipped: number }): void {
  for (const t of tasks) {
    if (t.tasks) count(t.tasks, into);
    if (t.type !== 'test') continue;
    if (t.result?.state === 'pass') into.passed++;
    else if (t.result?.state === 'fail') into.failed++;
    else into.skipped++;
  }
}

export default class PlainSummaryReporter implements Reporter {
  onFinished(files: readonly Task[] = [], errors: readonly unknown[] = []): void {
    const totals = { passed: 0, failed: 0, skipped: 0 };
    count(files, totals);
    const failed = totals.failed + errors.length;
    process.stdout.write(`\ntests: ${totals.passed} passed, ${failed} failed${totals.skipped ? `, ${totals.skipped} skipped` : ''}\n`);
  }
}
