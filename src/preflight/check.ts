/** One preflight check's outcome. `detail` is shown to the operator (already free of secrets). */
export type Check = {
  /** `vault` for checks from this machine, else the node's name. */
  scope: string;
  name: string;
  status: 'pass' | 'fail' | 'warn' | 'skip';
  detail: string;
};

const MARK: Record<Check['status'], string> = { pass: 'ok  ', fail: 'FAIL', warn: 'warn', skip: 'skip' };

/** Pure. The checks as an aligned list, then one verdict line. */
export function renderChecks(checks: readonly Check[]): string {
  const scopeWidth = Math.max(5, ...checks.map((c) => c.scope.length));
  const nameWidth = Math.max(4, ...checks.map((c) => c.name.length));
  const lines = checks.map((c) => `  ${MARK[c.status]}  ${c.scope.padEnd(scopeWidth)}  ${c.name.padEnd(nameWidth)}  ${c.detail}`);
  const failed = checks.filter((c) => c.status === 'fail');
  lines.push(
    failed.length === 0
      ? `Preflight passed: ${checks.filter((c) => c.status === 'pass').length} checks passed${checks.some((c) => c.status === 'skip') ? ', some skipped (see above)' : ''}.`
      : `Preflight FAILED: ${failed.length} of ${checks.length} checks failed; nothing was changed.`,
  );
  return `Preflight checks:\n${lines.join('\n')}\n`;
}

/** true when no check failed. */
export function checksPassed(checks: readonly Check[]): boolean {
  return checks.every((c) => c.status !== 'fail');
}
