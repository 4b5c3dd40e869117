import { escapeControls, type Redactor } from '../util/redact.js';

/** human: text; quiet: only the outcome line and errors; json: one JSON event per line on stdout (NDJSON). */
export type OutputMode = 'human' | 'quiet' | 'json';

/**
 * Where the CLI writes. Every line passes through the current redactor, so a
 * secret that slipped into an error message is still never printed, and then
 * through escapeControls, so no text from a node (even before the redactor is
 * known) acts on the terminal. Only rollout's own colour is added after that.
 */
export class Output {
  #redact: Redactor = (s) => s;
  /** Colour diffs: only on a terminal, never with NO_COLOR set (any value) or --no-color. */
  color = process.stdout.isTTY === true && !process.env.NO_COLOR;
  mode: OutputMode = 'human';

  /** From now on, redact with `r` (set once the inventory's secrets are known). */
  useRedactor(r: Redactor): void {
    this.#redact = r;
  }

  /** Informational text: printed in human mode, dropped by --quiet, a `message` event in JSON mode. */
  out(text: string): void {
    if (this.mode === 'json') return this.event('message', { text: text.replace(/^\n+|\n+$/g, '') });
    if (this.mode === 'quiet') return;
    process.stdout.write(this.redact(text.endsWith('\n') ? text : `${text}\n`));
  }

  /** A rendered plan: like out(), then coloured (colorDiff) when colour is on; the colour is rollout's own. */
  diff(text: string): void {
    if (this.mode !== 'human') return this.out(text);
    const safe = this.redact(text.endsWith('\n') ? text : `${text}\n`);
    process.stdout.write(this.color ? colorDiff(safe) : safe);
  }

  /** The outcome line: printed even with --quiet; a `message` event in JSON mode. */
  result(text: string): void {
    if (this.mode === 'json') return this.event('message', { text: text.replace(/^\n+|\n+$/g, '') });
    process.stdout.write(this.redact(text.endsWith('\n') ? text : `${text}\n`));
  }

  /** Errors and warnings: always on stderr; in JSON mode also an `error` event. */
  err(text: string): void {
    process.stderr.write(this.redact(text.endsWith('\n') ? text : `${text}\n`));
    if (this.mode === 'json') this.event('error', { text: text.replace(/^\n+|\n+$/g, '') });
  }

  /**
   * JSON mode only: one line `{"ts": ISO time, "event": name, ...data}` on
   * stdout, every string in it redacted before encoding.
   */
  event(name: string, data: Record<string, unknown> = {}): void {
    if (this.mode !== 'json') return;
    const redactDeep = (v: unknown): unknown =>
      typeof v === 'string' ? this.redact(v) : Array.isArray(v) ? v.map(redactDeep) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, redactDeep(x)])) : v;
    process.stdout.write(`${JSON.stringify({ ts: new Date().toISOString(), event: name, ...(redactDeep(data) as object) })}\n`);
  }

  /** `text` as this output shows it: redacted, control characters escaped. */
  redact(text: string): string {
    return escapeControls(this.#redact(text));
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
