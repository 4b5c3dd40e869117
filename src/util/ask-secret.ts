// Asking a person for a secret on the terminal: nothing echoed, nothing kept
// beyond the process, and only when there is a terminal to ask on.

/** Whether a secret can be asked for: stdin and stderr are a terminal. */
export function canAskSecret(): boolean {
  return process.stdin.isTTY === true && process.stderr.isTTY === true;
}

/**
 * Reads one line from the terminal without echoing it (raw mode; Backspace
 * edits, Ctrl-C and Ctrl-D give up). The prompt goes to stderr, so stdout
 * stays clean for --json.
 */
export function askSecret(prompt: string): Promise<string | null> {
  if (!canAskSecret()) return Promise.resolve(null);
  return new Promise((resolve) => {
    const stdin = process.stdin;
    process.stderr.write(prompt);
    stdin.setRawMode(true);
    stdin.resume();
    let value = '';
    const done = (result: string | null) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done(value);
        if (ch === '\u0003' || ch === '\u0004') return done(null);
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}
