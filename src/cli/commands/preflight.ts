import { PreflightError } from '../../errors.js';
import { checksPassed, renderChecks } from '../../preflight/check.js';
import { runPreflight, type PreflightFlags } from '../../preflight/run-preflight.js';
import { EXIT } from '../../exit-codes.js';
import type { Output } from '../output.js';
import { openSession, type Session } from '../../session/session.js';

/** Plans (to know what would change) and runs every preflight check; prints them; throws when any failed. */
export async function checkSession(session: Session, flags: PreflightFlags, io: Output): Promise<void> {
  const failed = session.plan.nodes.filter((n) => n.status === 'error');
  if (failed.length > 0) {
    throw new PreflightError(failed.map((n) => `${n.node.name}: ${n.status === 'error' ? n.error : ''}`), 'some nodes could not be planned (nothing was changed)');
  }
  const checks = await runPreflight(session, flags);
  if (io.mode === 'json') for (const c of checks) io.event('check', c);
  else io.out(renderChecks(checks));
  if (!checksPassed(checks)) {
    throw new PreflightError(checks.filter((c) => c.status === 'fail').map((c) => `${c.scope} ${c.name}: ${c.detail}`));
  }
}

/** `rollout preflight INVENTORY`: every check apply makes first; changes nothing; exit 0 only if all pass. */
export async function preflightCommand(inventoryFile: string, flags: PreflightFlags & { parallel?: number; limit?: string; acceptNewHostKeys?: boolean }, io: Output): Promise<number> {
  const session = await openSession(inventoryFile, { ...flags, vault: { health: !flags.skipVaultChecks } });
  try {
    io.useRedactor(session.redact);
    for (const note of session.notes) io.err(`note: ${note}`);
    await checkSession(session, flags, io);
    return EXIT.ok;
  } finally {
    session.close();
  }
}
