/** Exit codes, documented in the README; the CLI maps errors to them, and the run report records the one a run ends with. */
export const EXIT = {
  ok: 0,
  /** The rollout stopped early; every node is healthy on its old or new files (a node failed its gate and was restored, or could not be reached before it was touched). */
  rolledBack: 1,
  /** Bad command line, inventory or playbook. Nothing was contacted or changed. */
  invalidInput: 2,
  /** A node could not be planned, failed preflight, the fleet is locked or a saved plan is stale. Nothing was changed. */
  preflightFailed: 3,
  /** A node needs a human now: it could not be restored, its state is unknown, or another node became unhealthy. */
  rollbackFailed: 4,
  /** apply was not confirmed (declined, or no TTY and no --yes). Nothing was changed. */
  notConfirmed: 5,
  /** plan --detailed-exitcode: the plan has changes (nothing was changed). */
  changesPending: 6,
  /** Interrupted (Ctrl-C, SIGTERM); the run's state is recorded: `apply --resume` continues it. */
  interrupted: 130,
  /** A bug in rollout. */
  internal: 70,
} as const;
