import { describe, expect, it } from 'vitest';
import { LineQueue } from '../../src/util/line-queue.js';

describe('LineQueue', () => {
  it('yields whole lines across chunks, a character split between chunks decoded whole, and ends after end()', async () => {
    const q = new LineQueue();
    const euro = Buffer.from('€');
    q.push(Buffer.concat([Buffer.from('one\ntw'), euro.subarray(0, 1)]));
    q.push(Buffer.concat([euro.subarray(1), Buffer.from('o\nunfinished')]));
    q.end();
    const got: string[] = [];
    for await (const line of q.lines) got.push(line);
    expect(got).toEqual(['one', 'tw€o']);
    expect(q.ended).toBe(true);
  });

  it('a reader waiting for a line wakes when it comes', async () => {
    const q = new LineQueue();
    const it = q.lines[Symbol.asyncIterator]();
    const next = it.next();
    q.push(Buffer.from('late\n'));
    expect(await next).toEqual({ value: 'late', done: false });
    q.end();
    expect((await it.next()).done).toBe(true);
  });
});
