import { readFile } from 'node:fs/promises';
import { InputError } from '../errors.js';
import type { Session } from '../cli/prepare.js';
import { readRemoteFile } from '../transport/remote-files.js';
import { mapLimit } from '../util/map-limit.js';
import type { Check } from './check.js';
import { changeDirs, checkNode, parseNodeChecks } from './node-checks.js';
import { runVaultChecks } from './vault-checks.js';

export type PreflightFlags = {
  skipVaultChecks?: boolean;
  skipVaultLogin?: boolean;
  /** The run that holds the fleet lock (apply); preflight alone expects every node unlocked. */
  lockRunId?: string;
};

/**
 * Every check that can be made without changing anything: Vault from this machine
 * (unless skipped), then on every node its own readiness and its path to Vault.
 * Order is stable: Vault checks first, then nodes in inventory order.
 */
export async function runPreflight(session: Session, flags: PreflightFlags): Promise<Check[]> {
  const vault = session.vars.values.vault;
  const ready = session.plan.nodes.filter((n) => n.status === 'ready');
  // The nodes check themselves while this machine checks Vault; apply's nodes
  // already did, in the read that planned them (unless a change writes in a
  // directory that read did not know).
  const perNode = mapLimit(ready, session.parallel, async (n) => {
    const t = session.transports.get(n.node.name)!;
    const done = session.nodeChecks.get(n.node.name);
    // This run took the lock with that read, and lockFleet settled it since.
    if (done && changeDirs(n).every((d) => done.target.dirs.includes(d))) return parseNodeChecks(n.node.name, done.out, n, done.target, 'settled');
    return checkNode(t, n, session.playbook.service.unit, { lockRunId: flags.lockRunId ?? null, ...(vault ? { vaultServer: vault.server } : {}) });
  });
  perNode.catch(() => undefined);
  const checks = await vaultChecks(session, flags, ready);
  checks.push(...(await perNode).flat());
  return checks.map((c) => ({ ...c, detail: session.redact(c.detail) }));
}

async function vaultChecks(session: Session, flags: PreflightFlags, ready: Session['plan']['nodes']): Promise<Check[]> {
  const vault = session.vars.values.vault;
  const checks: Check[] = [];
  if (vault) {
    if (flags.skipVaultChecks) {
      checks.push({ scope: 'vault', name: 'checks', status: 'skip', detail: '--skip-vault-checks: this machine did not contact Vault; each node still checks it can reach it' });
    } else {
      let ca: Buffer | undefined;
      if (session.inventory.vaultCaFile) {
        try {
          ca = await readFile(session.inventory.vaultCaFile);
        } catch (err) {
          throw new InputError(session.inventory.file, [`preflight.vaultCaFile: cannot read ${session.inventory.vaultCaFile} (${(err as NodeJS.ErrnoException).code})`]);
        }
      }
      // A Kubernetes JWT given as a path lives on the nodes: read it from the first one.
      let jwtFromNode: string | undefined;
      const first = ready[0];
      if (vault.kubernetes?.jwt.startsWith('/') && first && !flags.skipVaultLogin) {
        const file = await readRemoteFile(session.transports.get(first.node.name)!, vault.kubernetes.jwt);
        jwtFromNode = file?.content.toString('utf8').trim();
      }
      checks.push(...(await runVaultChecks(vault, {
        endpoint: { server: vault.server, timeoutMs: session.inventory.vaultTimeoutMs, ...(ca ? { ca } : {}) },
        skipLogin: flags.skipVaultLogin === true,
        ...(jwtFromNode ? { jwtFromNode } : {}),
      })));
    }
  }
  return checks;
}
