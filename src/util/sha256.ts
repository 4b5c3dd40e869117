import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';

/** Hex sha256 of bytes or UTF-8 text. */
export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** sha256 of a local file (inventory, playbook) for saved plans and reports. */
export async function fileSha256(file: string): Promise<string> {
  return sha256(await readFile(file));
}
