// Every failure rollout anticipates is a RolloutError subclass; cli/main.ts maps
// them to exit codes in one place. Messages state the fact, then the next step.

/** Base of every anticipated failure. Anything else reaching main.ts is a bug. */
export class RolloutError extends Error {
  override name = 'RolloutError';
}

/** The command line itself is wrong (unknown flag, missing argument). */
export class UsageError extends RolloutError {
  override name = 'UsageError';
}

/** An inventory or playbook file is missing, does not parse or fails its schema. */
export class InputError extends RolloutError {
  override name = 'InputError';
  readonly file: string;
  readonly problems: readonly string[];
  constructor(file: string, problems: readonly string[]) {
    super(`${file}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.file = file;
    this.problems = problems;
  }
}

/** A node could not be read or checked; nothing has been changed anywhere. */
export class NodeError extends RolloutError {
  override name = 'NodeError';
  readonly node: string;
  constructor(node: string, message: string) {
    super(`${node}: ${message}`);
    this.node = node;
  }
}

/** A host key was not in known_hosts, or differs from the recorded one. */
export class HostKeyError extends NodeError {
  override name = 'HostKeyError';
}

/** One or more nodes failed the checks made before any change; nothing was changed. */
export class PreflightError extends RolloutError {
  override name = 'PreflightError';
  readonly failures: readonly string[];
  constructor(failures: readonly string[], header = 'preflight failed, no node was changed') {
    super(`${header}:\n${failures.map((f) => `  - ${f}`).join('\n')}`);
    this.failures = failures;
  }
}

/** A file on a node differs from what the plan read; the plan must be made again. */
export class StalePlanError extends NodeError {
  override name = 'StalePlanError';
  constructor(node: string, path: string) {
    super(node, `${path} changed after the plan was made; nothing was written to it. Run \`rollout plan\` again and review the new diff`);
  }
}

/** The operator declined, or no TTY was there to ask and --yes was not given. */
export class NotConfirmedError extends RolloutError {
  override name = 'NotConfirmedError';
}

/** A node stopped the rollout: failed its gate (and was restored), or was unreachable, or another node was unhealthy. */
export class RolloutFailedError extends RolloutError {
  override name = 'RolloutFailedError';
  readonly node: string;
  /** true when every node is healthy on its old or new files; false means a node needs a human now. */
  readonly restored: boolean;
  /** The node's state in a word or three, for the run summary. */
  readonly summary: string;
  constructor(node: string, restored: boolean, message: string, summary?: string) {
    super(message);
    this.node = node;
    this.restored = restored;
    this.summary = summary ?? (restored ? 'restored from backup, healthy on its old files' : 'NEEDS ATTENTION (see below)');
  }
}

/** The operator interrupted the run; it stopped between nodes and its state is recorded. */
export class InterruptedError extends RolloutError {
  override name = 'InterruptedError';
}

/** A remote command exited non-zero where success was required. */
export class RemoteCommandError extends NodeError {
  override name = 'RemoteCommandError';
  readonly code: number | null;
  constructor(node: string, what: string, code: number | null, stderr: string) {
    const detail = stderr.trim().split('\n').slice(-3).join(' | ');
    super(node, `${what} failed (exit ${code ?? 'signal'})${detail ? `: ${detail}` : ''}`);
    this.code = code;
  }
}

/**
 * The SSH connection is gone. `started`: the command had begun, so whether it
 * took effect is unknown; false: it never ran (no channel could be opened).
 */
export class ConnectionLostError extends NodeError {
  override name = 'ConnectionLostError';
  readonly started: boolean;
  constructor(node: string, message: string, started: boolean) {
    super(node, message);
    this.started = started;
  }
}

/** The node's sshd does not open TCP connections for this login (AllowTcpForwarding no, or a permitopen that leaves the address out). */
export class ForwardingRefusedError extends NodeError {
  override name = 'ForwardingRefusedError';
}

/** A path that exists on a node but is not read: not a regular file, too large, or a symlink that does not resolve. */
export class UnreadableFileError extends NodeError {
  override name = 'UnreadableFileError';
  readonly path: string;
  /** What is wrong, to follow the path in a sentence ("is a FIFO, not a regular file; ..."). */
  readonly reason: string;
  constructor(node: string, path: string, reason: string) {
    super(node, `${path} ${reason}`);
    this.path = path;
    this.reason = reason;
  }
}

/** Another run holds (or held) the lock of one or more nodes; nothing was changed. */
export class LockHeldError extends RolloutError {
  override name = 'LockHeldError';
}

/**
 * A file's content cannot be edited safely (does not parse, unexpected shape).
 * Pure edit functions throw it without knowing the node or path; the planner adds both,
 * which is why it is not a RolloutError itself.
 */
export class FileContentError extends Error {
  override name = 'FileContentError';
}

/**
 * Vault could not be reached at all (DNS, TCP, TLS, timeout). `code` is Node's error code.
 * Not a RolloutError: preflight turns it into a failed check.
 */
export class VaultUnreachableError extends Error {
  override name = 'VaultUnreachableError';
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}
