import type { Redactor } from '../util/redact.js';

/**
 * Where the CLI writes. Every line passes through the current redactor, so a
 * secret that slipped into an error message is still never printed.
 */
export class Output {
  #redact: Redactor = (s) => s;
  /** Colour diffs: only on a terminal, never with NO_COLOR set (any value) or --no-color. */
  color = process.stdout.isTTY === true && !process.env.NO_COLOR;

  /** From now on, redact with `r` (set once the inventory's secrets are known). */
  useRedactor(r: Redactor): void {
    this.#redact = r;
  }

  out(text: string): void {
    process.stdout.write(this.#redact(text.endsWith('\n') ? text : `${text}\n`));
  }

  err(text: string): void {
    process.stderr.write(this.#redact(text.endsWith('\n') ? text : `${text}\n`));
  }

  redact(text: string): string {
    return this.#redact(text);
  }
}

const ANSI = { red: '\x1b[31m', green: '\x1b[32m', cyan: '\x1b[36m', bold: '\x1b[1m', reset: '\x1b[0m' };

/** Pure. Colours a rendered plan's diff lines (removed red, added green, hunks cyan, node headers bold). */
export function colorDiff(text: string): string {
  return text
    .split('\n')
    .map((l) => {
      if (l.startsWith('+++') || l.startsWith('---')) return `${ANSI.bold}${l}${ANSI.reset}`;
      if (l.startsWith('+')) return `${ANSI.green}${l}${ANSI.reset}`;
      if (l.startsWith('-')) return `${ANSI.red}${l}${ANSI.reset}`;
      if (l.startsWith('@@')) return `${ANSI.cyan}${l}${ANSI.reset}`;
      if (l.startsWith('=== ')) return `${ANSI.bold}${l}${ANSI.reset}`;
      return l;
    })
    .join('\n');
}
