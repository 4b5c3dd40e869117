import { createHash } from 'node:crypto';

/** Hex sha256 of bytes or UTF-8 text. */
export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}
