import { runApply, type ApplyFlags } from '../../session/run-apply.js';
import type { ProgressStyle } from '../../apply/execute.js';
import { UsageError } from '../../errors.js';
import { EXIT } from '../../exit-codes.js';
import { canAsk, confirm } from '../confirm.js';
import type { Output } from '../output.js';
import { checkSession } from './preflight.js';


/**
 * `rollout apply INVENTORY|PLAN` (see runApply). Resolves with the exit code;
 * a second Ctrl-C resolves it at once with 130, the node in progress recorded
 * unknown, while the run is abandoned (main.ts then exits).
 */
export function applyCommand(target: string, flags: ApplyFlags, io: Output): Promise<number> {
  if (flags.canary && !flags.yes && !canAsk()) {
    return Promise.reject(new UsageError('--canary asks before going past the first node: it needs a terminal, or --yes to show the canary\'s evidence and go on without asking'));
  }
  return new Promise<number>((resolve, reject) => {
    runApply(target, flags, {
      view: io,
      showPlan: async (plan, redact) => (await import('../show-plan.js')).showPlan(io, plan, redact),
      preflight: (session, f) => checkSession(session, f, io),
      confirm: (question, declined) => confirm(flags.yes === true, io, question, declined),
      progress: progressStyle(),
      onInterrupt: (handler) => {
        process.on('SIGINT', handler);
        process.on('SIGTERM', handler);
        return () => {
          process.off('SIGINT', handler);
          process.off('SIGTERM', handler);
        };
      },
      onHardStop: () => resolve(EXIT.interrupted),
      preload: () => import('../show-plan.js'),
    }).then(resolve, reject);
  });
}

function progressStyle(): ProgressStyle {
  return process.stdout.isTTY && process.env.CI !== 'true' ? 'tty' : 'plain';
}
