import { createInterface } from 'node:readline/promises';
import { NotConfirmedError } from '../errors.js';
import type { Output } from './output.js';

/** Whether there is a terminal to ask on. */
export function canAsk(): boolean {
  return process.stdin.isTTY === true && process.stdout.isTTY === true;
}

/**
 * Asks on a terminal; without one requires --yes. Throws NotConfirmedError
 * (`declined` says what state things are in) otherwise.
 */
export async function confirm(
  yes: boolean,
  io: Output,
  question = 'Go ahead, restarting the nodes one at a time? Type "yes" to go on: ',
  declined = 'not confirmed: nothing was changed.',
): Promise<void> {
  if (yes) return;
  if (!canAsk()) {
    throw new NotConfirmedError('no terminal to confirm on: review the plan above, then run again with --yes. Nothing was changed.');
  }
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    const answer = await rl.question(question);
    if (answer.trim() !== 'yes') throw new NotConfirmedError(declined);
  } finally {
    rl.close();
  }
  io.out('Confirmed.');
}

