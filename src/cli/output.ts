import type { Redactor } from '../util/redact.js';

/**
 * Where the CLI writes. Every line passes through the current redactor, so a
 * secret that slipped into an error message is still never printed.
 */
export class Output {
  #redact: Redactor = (s) => s;

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
