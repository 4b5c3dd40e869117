/** What one remote command returned. `code` is null when it died by a signal. */
export type ExecResult = { code: number | null; stdout: Buffer; stderr: string };

/** A long-running remote command read line by line (a journal follow). */
export type LineStream = {
  /** Each stdout line, without its newline, until the command ends or close() is called. */
  lines: AsyncIterable<string>;
  close(): void;
};

/**
 * Everything rollout may do on a node: run a command (with the privilege needed,
 * through sudo when the login user is not root) and follow one. File operations
 * are built on these in remote-files.ts, so this is the whole transport boundary.
 */
export interface Transport {
  readonly name: string;
  /** Resolves on any exit status; `stdin` carries file contents so they never reach a command line. */
  exec(command: string, opts?: { stdin?: Buffer; timeoutMs?: number }): Promise<ExecResult>;
  stream(command: string): LineStream;
  close(): void;
}
