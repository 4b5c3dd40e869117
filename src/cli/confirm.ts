import { createInterface } from 'node:readline/promises';
import { NotConfirmedError } from '../errors.js';
import type { Output } from './output.js';

/** Asks on a terminal; without one requires --yes. Throws NotConfirmedError otherwise. */
export async function confirm(yes: boolean, io: Output): Promise<void> {
  if (yes) return;
  if (!process.stdin.isTTY || !process.stdout.isTTY) {
    throw new NotConfirmedError('no terminal to confirm on: review the plan above, then run again with --yes. Nothing was changed.');
  }
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    const answer = await rl.question('Go ahead, restarting the nodes one at a time? Type "yes" to go on: ');
    if (answer.trim() !== 'yes') throw new NotConfirmedError('not confirmed: nothing was changed.');
  } finally {
    rl.close();
  }
  io.out('Confirmed.');
}

