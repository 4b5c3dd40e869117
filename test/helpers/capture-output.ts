import { afterEach, vi } from 'vitest';

/** What the process writes to stdout from now on, chunk by chunk (stderr is swallowed); restored after each test. */
export function captureOutput(): string[] {
  const lines: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  return lines;
}

afterEach(() => {
  vi.restoreAllMocks();
});
