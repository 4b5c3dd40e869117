/** Exit codes, documented in the README; main.ts is the only place that maps errors to them. */
export const EXIT = {
  ok: 0,
  /** A node failed its gate, was restored and came back healthy; the rollout stopped. */
  rolledBack: 1,
  /** Bad command line, inventory or playbook. Nothing was contacted or changed. */
  invalidInput: 2,
  /** A node could not be planned or failed preflight. Nothing was changed. */
  preflightFailed: 3,
  /** A node failed and could not be restored to a healthy state: it needs a human now. */
  rollbackFailed: 4,
  /** apply was not confirmed (declined, or no TTY and no --yes). Nothing was changed. */
  notConfirmed: 5,
  /** A bug in rollout. */
  internal: 70,
} as const;
