import type { Duplex } from 'node:stream';

/** What one remote command returned. `code` is null when it died by a signal. */
export type ExecResult = { code: number | null; stdout: Buffer; stderr: string };

/** A long-running remote command read line by line (a journal follow). */
export type LineStream = {
  /** Each stdout line, without its newline, until the command ends or close() is called. */
  lines: AsyncIterable<string>;
  /**
   * Writes to the command's stdin (streams opened with `{ input: true }`; text
   * written before the channel opened is sent once it does). Control words,
   * and file contents as exec's stdin carries them (never logged, never on a
   * command line). false when the text cannot reach the command: the channel
   * ended (or never opened) or was closed.
   */
  send(text: string): boolean;
  /** Whether the remote command was started (its channel opened); false while opening and when it never could be. */
  started(): boolean;
  /** Why the channel could not be opened (a ConnectionLostError that says it never ran), else null. */
  failure(): Error | null;
  close(): void;
};

/**
 * Everything rollout may do on a node: run a command (with the privilege needed,
 * through sudo when the login user is not root) and follow one. File operations
 * are built on these in agent/files.ts, so this is the whole transport boundary.
 */
export interface Transport {
  readonly name: string;
  /**
   * Resolves on any exit status; `stdin` carries file contents so they never
   * reach a command line. `onStdout` sees stdout as it arrives (the result
   * still holds all of it).
   */
  exec(command: string, opts?: { stdin?: Buffer; timeoutMs?: number; onStdout?: (chunk: Buffer) => void }): Promise<ExecResult>;
  /** Without `input` the command's stdin is closed at once; with it, `send` feeds it until close(). */
  stream(command: string, opts?: { input?: boolean }): LineStream;
  /**
   * A TCP connection to `host:port` made by the node itself (SSH's direct-tcpip
   * forwarding; the name resolved on the node). Rejects with a
   * ForwardingRefusedError when the node's sshd refuses forwarding by policy
   * (`AllowTcpForwarding no`), with a NodeError when the address cannot be
   * reached. Absent: this transport cannot open one, and callers ask by a
   * command instead.
   */
  connect?(host: string, port: number): Promise<Duplex>;
  close(): void;
}
