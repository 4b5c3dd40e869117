import { StringDecoder } from 'node:string_decoder';

/**
 * The lines of a byte stream as they arrive (without their newlines; a
 * character split between chunks is decoded whole), read by one async
 * iterator that ends once `end()` was called and every line was read.
 */
export class LineQueue {
  readonly #queue: string[] = [];
  readonly #decoder = new StringDecoder('utf8');
  #partial = '';
  #ended = false;
  #wake: (() => void) | null = null;

  /** Lines, in order; ends after end(). */
  readonly lines: AsyncIterable<string> = { [Symbol.asyncIterator]: () => this.#read() };

  push(chunk: Buffer): void {
    const parts = (this.#partial + this.#decoder.write(chunk)).split('\n');
    this.#partial = parts.pop() ?? '';
    this.#queue.push(...parts);
    this.#wake?.();
  }

  /** No more chunks: an unfinished last line is dropped, as a line needs its newline. */
  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  get ended(): boolean {
    return this.#ended;
  }

  async *#read(): AsyncGenerator<string> {
    for (;;) {
      if (this.#queue.length > 0) yield this.#queue.shift()!;
      else if (this.#ended) return;
      else await new Promise<void>((r) => (this.#wake = r));
      this.#wake = null;
    }
  }
}
