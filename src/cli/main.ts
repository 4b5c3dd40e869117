#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { InputError, NotConfirmedError, PreflightError, RolloutError, RolloutFailedError, UsageError } from '../errors.js';
import { applyCommand } from './commands/apply.js';
import { planCommand } from './commands/plan.js';
import { preflightCommand } from './commands/preflight.js';
import { EXIT } from './exit-codes.js';
import { Output } from './output.js';

const HELP = `rollout: roll a configuration change across a fleet over SSH, one node at a time.

Usage:
  rollout plan  INVENTORY [--parallel N]
      Connect to every node, read its files, print a unified diff per node and file
      and the restart order. Changes nothing.
      Example: rollout plan inventories/prod.yaml

  rollout preflight INVENTORY [--skip-vault-checks] [--skip-vault-login] [--parallel N]
      Every check apply makes before it changes anything: Vault from this machine
      (health, a login as the KMS does it, capabilities, HMAC, encrypt/decrypt,
      token revoked) and on every node (root, files, journal, service running, Vault
      reachable over TLS from the node). Changes nothing; exit 0 only if all pass.
      Example: rollout preflight inventories/prod.yaml

  rollout apply INVENTORY [--yes] [--dry-run] [--skip-vault-checks] [--skip-vault-login] [--parallel N]
      Show the same plan, run preflight, ask (or --yes), then per phase and node:
      back up, write atomically, restart, wait for the journal's ready line.
      A node that fails its gate is restored from its backup and the rollout stops.
      Example: rollout apply inventories/prod.yaml

Options:
  --yes           apply without asking (required when there is no terminal)
  --dry-run       apply: print the plan and stop, exactly like plan
  --parallel N    nodes connected to and read at once while planning (default: inventory's parallel, 16)
  --skip-vault-checks  preflight/apply: this machine cannot reach Vault; skip its checks (nodes still check)
  --skip-vault-login   preflight/apply: no login (a SecretID with limited uses); only health is checked
  -h, --help      this help
  --version       rollout's version

Exit codes: 0 done · 1 a node failed and was restored, rollout stopped · 2 invalid input ·
3 a node could not be planned or failed preflight, nothing changed · 4 a node failed and
could NOT be restored · 5 not confirmed · 70 internal error.
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Parses argv, runs one command and returns its exit code. The only place errors become exit codes. */
export async function main(argv: string[], io = new Output()): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        yes: { type: 'boolean' },
        'dry-run': { type: 'boolean' },
        parallel: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
        'skip-vault-checks': { type: 'boolean' },
        'skip-vault-login': { type: 'boolean' },
      },
    });
    if (values.version) {
      io.out(version());
      return EXIT.ok;
    }
    const [command, inventory, ...extra] = positionals;
    if (values.help || command === undefined || command === 'help') {
      io.out(HELP);
      return command === undefined && !values.help ? EXIT.invalidInput : EXIT.ok;
    }
    if (command !== 'plan' && command !== 'apply' && command !== 'preflight') {
      throw new UsageError(`unknown command "${command}"; use plan, preflight or apply (rollout --help)`);
    }
    if (!inventory) throw new UsageError(`rollout ${command} needs an inventory file, e.g. rollout ${command} inventories/prod.yaml`);
    if (extra.length > 0) throw new UsageError(`unexpected argument(s): ${extra.join(' ')}`);
    let parallel: number | undefined;
    if (values.parallel !== undefined) {
      parallel = Number(values.parallel);
      if (!Number.isInteger(parallel) || parallel < 1 || parallel > 512) throw new UsageError('--parallel takes a whole number from 1 to 512');
    }
    const skips = { skipVaultChecks: values['skip-vault-checks'] === true, skipVaultLogin: values['skip-vault-login'] === true };
    if (command !== 'apply' && (values.yes || values['dry-run'])) {
      throw new UsageError(`--yes and --dry-run belong to apply; ${command} never changes anything`);
    }
    if (command === 'plan') {
      if (skips.skipVaultChecks || skips.skipVaultLogin) throw new UsageError('plan does not contact Vault; --skip-vault-* belong to preflight and apply');
      return await planCommand(inventory, { ...(parallel ? { parallel } : {}) }, io);
    }
    if (command === 'preflight') return await preflightCommand(inventory, { ...(parallel ? { parallel } : {}), ...skips }, io);
    return await applyCommand(inventory, { ...(parallel ? { parallel } : {}), yes: values.yes === true, dryRun: values['dry-run'] === true, ...skips }, io);
  } catch (err) {
    return report(err, io);
  }
}

function report(err: unknown, io: Output): number {
  if (err instanceof RolloutFailedError) {
    io.err(`\nROLLOUT STOPPED: ${err.message}`);
    return err.restored ? EXIT.rolledBack : EXIT.rollbackFailed;
  }
  if (err instanceof PreflightError) {
    io.err(`\n${err.message}`);
    return EXIT.preflightFailed;
  }
  if (err instanceof NotConfirmedError) {
    io.err(err.message);
    return EXIT.notConfirmed;
  }
  if (err instanceof InputError || err instanceof UsageError) {
    io.err(`error: ${err.message}`);
    return EXIT.invalidInput;
  }
  if (err instanceof RolloutError) {
    io.err(`error: ${err.message}`);
    return EXIT.preflightFailed;
  }
  if (err instanceof TypeError && (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
    io.err(`error: ${err.message} (rollout --help)`);
    return EXIT.invalidInput;
  }
  io.err(`internal error (please report it): ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  return EXIT.internal;
}

process.exitCode = await main(process.argv.slice(2));
