#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { InputError, InterruptedError, LockHeldError, NotConfirmedError, PreflightError, RolloutError, RolloutFailedError, UsageError } from '../errors.js';
import { rolloutVersion } from '../util/version.js';
import { EXIT } from '../exit-codes.js';
import { Output } from './output.js';

// Each command's usage, what it does and an example; \`rollout CMD --help\` prints one.
const COMMANDS: Record<string, string> = {
  plan: `  rollout plan INVENTORY [--out PLAN] [--detailed-exitcode] [--parallel N] [--limit NAMES]
      Connect to every node, read its files, print a unified diff per node and file
      and the restart order. Changes nothing. --out saves the reviewed plan
      (checksums and redacted diffs, no secret) for \`rollout apply PLAN\`.
      --detailed-exitcode: exit 6 when changes are pending, 0 when every node is
      up to date (for CI drift checks).
      Example: rollout plan inventories/prod.yaml --out change.plan`,
  preflight: `  rollout preflight INVENTORY [--skip-vault-checks] [--skip-vault-login] [--order ORDER] [--parallel N] [--limit NAMES]
      Every check apply makes before it changes anything: Vault from this machine
      (health, a login as the KMS does it, capabilities, HMAC, encrypt/decrypt,
      token revoked), the cluster (with vars.cluster.apiKey: every member up, the
      same nodes as the inventory, the leader) and on every node (root, files,
      journal, service running, Vault reachable over TLS from the node). Changes
      nothing; exit 0 only if all pass.
      Example: rollout preflight inventories/prod.yaml`,
  apply: `  rollout apply INVENTORY|PLAN [--yes] [--canary] [--dry-run] [--resume] [--break-lock]
                [--skip-vault-checks] [--skip-vault-login] [--order ORDER] [--parallel N] [--limit NAMES]
      Show the plan (a saved PLAN is refused if any node changed since), run
      preflight, lock the fleet, ask (or --yes), stage the new files and backups on
      every node, then per phase and node: move the files into place, restart, wait
      for the journal's ready line. A node that fails its gate is restored from its
      backup and the rollout stops. Every step is recorded; --resume continues the
      last run of INVENTORY. --canary: the first node alone, its gate evidence
      shown, then a question before any other node. With vars.cluster.apiKey the
      cluster's leader restarts last in each phase, and each node must be back in
      the cluster, none down, before the next one goes down.
      Example: rollout apply inventories/prod.yaml`,
  rollback: `  rollout rollback INVENTORY [--node NAME] [--force] [--yes] [--break-lock] [--limit NAMES]
      Put back the backups the last run took, node by node, each restarted and
      gated. Refuses a file changed since the run wrote it, unless --force.
      Example: rollout rollback inventories/prod.yaml --node kms-2`,
  prune: `  rollout prune INVENTORY [--keep N] [--yes] [--force] [--break-lock] [--limit NAMES]
      Remove the backups earlier runs left on every node, all but the newest N
      runs (default: none kept). Backups hold the files as they were, a removed
      MINIO_KMS_HSM_KEY line included: prune once the run is verified. Refused
      while the last run is not done (rollback needs its backups), unless --force.
      Example: rollout prune inventories/prod.yaml --keep 1`,
  status: `  rollout status INVENTORY [--json] [--parallel N] [--limit NAMES]
      Per node: reachable, host key verified, the unit's state and restart count,
      whether each phase's change is in place (yes / no / differs), whether the
      local HSM key is still in its file, and the last run's word on the node.
      Reads only. --json: one JSON object per node per line. Exit 0 when every
      node is reachable and its unit active/running, 4 otherwise.
      Example: rollout status inventories/prod.yaml`,
  check: `  rollout check INVENTORY|PLAYBOOK
      Validate the inventory and its playbook without any network: schemas, every
      secret reference resolvable, identity files, a known_hosts entry per node, the
      Vault CA file. Given a playbook (a file with phases and no nodes): that
      playbook alone (schema, files its tasks name, regexes, phases that change
      files without a restart). Prints every problem at once as file:line: key: message.
      Example: rollout check inventories/prod.yaml
               rollout check playbooks/greeter-settings.yaml`,
  init: `  rollout init HOST[:PORT]...
      Print a commented starter inventory for these nodes (in restart order).
      Example: rollout init kms-1.example.net kms-2.example.net > inventories/prod.yaml`,
};

const OPTIONS = `Options:
  --yes                apply/rollback without asking (required when there is no terminal)
  --dry-run            apply: print the plan and stop
  --canary             apply: the first node, its gate evidence, then ask before the others
                       (needs a terminal; with --yes it shows the evidence and goes on)
  --out PLAN           plan: save the plan to this file
  --detailed-exitcode  plan: exit 6 when changes are pending
  --resume             apply: continue the last run, re-checking every node first
  --break-lock         apply/rollback: take over a stale lock (older than lock.staleMinutes, holder gone)
  --node NAME          rollback: only this node
  --force              rollback: restore even files changed since the run wrote them;
                       prune: even when the last run is not done
  --keep N             prune: keep the newest N backup runs on each node (default 0)
  --parallel N         nodes connected to and read at once (default: inventory's parallel, 16)
  --json               plan/preflight/apply/status: one JSON event per line on stdout (NDJSON;
                       README "JSON events"); errors also stay on stderr
  -q, --quiet          plan/preflight/apply/rollback: only the outcome line and errors
  --limit NAMES        plan/preflight/apply/rollback/status: only these nodes (comma-separated node
                       names and nodes[].groups names), in inventory order
  --skip-vault-checks  preflight/apply: this machine cannot reach Vault; skip its checks (nodes still check)
  --skip-vault-login   preflight/apply: no login (a SecretID with limited uses); only health is checked
  --order ORDER        preflight/apply: restart order in each phase: leader-last (default with
                       vars.cluster.apiKey; needs it) or inventory
  --accept-new-host-keys
                       record the host key of a node seen for the first time in known_hosts
                       (said on stderr); a changed key is still refused
  --no-color           no colour in diffs (also: NO_COLOR set; never in a pipe)
  -h, --help           this help (rollout COMMAND --help: that command's)
  --version            rollout's version`;

const EXIT_CODES = `Exit codes: 0 done · 1 stopped early, every node healthy on old or new files ·
2 invalid input · 3 could not plan, preflight failed, fleet locked or saved plan stale:
nothing changed · 4 a node needs attention now · 5 not confirmed · 6 plan
--detailed-exitcode: changes pending · 130 interrupted (state recorded; apply
--resume) · 70 internal error.`;

const HELP = `rollout: roll a configuration change across a fleet over SSH, one node at a time.

Usage:
${Object.values(COMMANDS).join('\n\n')}

${OPTIONS}

${EXIT_CODES}
`;


/** Parses argv, runs one command and returns its exit code. The only place errors become exit codes. */
export async function main(argv: string[], io = new Output()): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        yes: { type: 'boolean' },
        'dry-run': { type: 'boolean' },
        out: { type: 'string' },
        resume: { type: 'boolean' },
        'break-lock': { type: 'boolean' },
        node: { type: 'string' },
        force: { type: 'boolean' },
        parallel: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
        'skip-vault-checks': { type: 'boolean' },
        'skip-vault-login': { type: 'boolean' },
        'detailed-exitcode': { type: 'boolean' },
        limit: { type: 'string' },
        canary: { type: 'boolean' },
        json: { type: 'boolean' },
        quiet: { type: 'boolean', short: 'q' },
        'no-color': { type: 'boolean' },
        'accept-new-host-keys': { type: 'boolean' },
        keep: { type: 'string' },
        order: { type: 'string' },
      },
    });
    if (values['no-color']) io.color = false;
    if (values.json && values.quiet) throw new UsageError('--json and --quiet cannot be used together');
    if (values.json) io.mode = 'json';
    else if (values.quiet) io.mode = 'quiet';
    if (values.version) {
      io.out(rolloutVersion());
      return EXIT.ok;
    }
    const [command, target, ...extra] = positionals;
    if (command !== undefined && values.help && COMMANDS[command]) {
      io.out(`Usage:\n${COMMANDS[command]}\n\n${OPTIONS}\n\n${EXIT_CODES}\n`);
      return EXIT.ok;
    }
    if (values.help || command === undefined || command === 'help') {
      io.out(HELP);
      return command === undefined && !values.help ? EXIT.invalidInput : EXIT.ok;
    }
    const allowed: Record<string, string[]> = {
      plan: ['accept-new-host-keys', 'out', 'parallel', 'detailed-exitcode', 'limit', 'json', 'quiet'],
      preflight: ['accept-new-host-keys', 'parallel', 'skip-vault-checks', 'skip-vault-login', 'order', 'limit', 'json', 'quiet'],
      apply: ['accept-new-host-keys', 'yes', 'dry-run', 'resume', 'break-lock', 'parallel', 'skip-vault-checks', 'skip-vault-login', 'order', 'limit', 'canary', 'json', 'quiet'],
      rollback: ['accept-new-host-keys', 'node', 'force', 'yes', 'break-lock', 'parallel', 'limit', 'quiet'],
      status: ['accept-new-host-keys', 'parallel', 'limit', 'json'],
      prune: ['accept-new-host-keys', 'keep', 'force', 'yes', 'break-lock', 'parallel', 'limit', 'quiet'],
      check: [],
      init: [],
    };
    const flags = allowed[command];
    if (!flags) throw new UsageError(`unknown command "${command}"; use ${Object.keys(COMMANDS).join(', ')} (rollout --help)`);
    const misplaced = Object.keys(values).filter((k) => !flags.includes(k) && k !== 'help' && k !== 'version' && k !== 'no-color');
    if (misplaced.length > 0) throw new UsageError(`${misplaced.map((k) => `--${k}`).join(', ')} cannot be used with ${command} (rollout --help)`);
    if (command === 'init') {
      const { initCommand } = await import('./commands/init.js');
      return await initCommand(positionals.slice(1), io);
    }
    if (!target) throw new UsageError(`rollout ${command} needs an inventory file, e.g. rollout ${command} inventories/prod.yaml`);
    if (extra.length > 0) throw new UsageError(`unexpected argument(s): ${extra.join(' ')}`);
    let parallel: number | undefined;
    if (values.parallel !== undefined) {
      parallel = Number(values.parallel);
      if (!Number.isInteger(parallel) || parallel < 1 || parallel > 512) throw new UsageError('--parallel takes a whole number from 1 to 512');
    }
    const p = { ...(parallel ? { parallel } : {}), ...(values.limit !== undefined ? { limit: values.limit } : {}), acceptNewHostKeys: values['accept-new-host-keys'] === true };
    if (values.order !== undefined && values.order !== 'inventory' && values.order !== 'leader-last') throw new UsageError(`--order takes inventory or leader-last, not "${values.order}"`);
    const skips = { skipVaultChecks: values['skip-vault-checks'] === true, skipVaultLogin: values['skip-vault-login'] === true, ...(values.order !== undefined ? { order: values.order as 'inventory' | 'leader-last' } : {}) };
    // Commands load on demand: each pulls in only the libraries it needs (startup is felt on every run).
    switch (command) {
      case 'plan': {
        const { planCommand } = await import('./commands/plan.js');
        return await planCommand(target, { ...p, ...(values.out ? { out: values.out } : {}), detailedExitcode: values['detailed-exitcode'] === true }, io);
      }
      case 'prune': {
        const { parseKeep, pruneCommand } = await import('./commands/prune.js');
        return await pruneCommand(target, { ...p, ...(values.keep !== undefined ? { keep: parseKeep(values.keep) } : {}), force: values.force === true, yes: values.yes === true, breakLock: values['break-lock'] === true }, io);
      }
      case 'status': {
        const { statusCommand } = await import('./commands/status.js');
        return await statusCommand(target, p, io);
      }
      case 'check': {
        const { checkCommand } = await import('./commands/check.js');
        return await checkCommand(target, io);
      }
      case 'preflight': {
        const { preflightCommand } = await import('./commands/preflight.js');
        return await preflightCommand(target, { ...p, ...skips }, io);
      }
      case 'rollback': {
        const { rollbackCommand } = await import('./commands/rollback.js');
        return await rollbackCommand(target, { ...p, ...(values.node ? { node: values.node } : {}), force: values.force === true, yes: values.yes === true, breakLock: values['break-lock'] === true }, io);
      }
      default: {
        const { applyCommand } = await import('./commands/apply.js');
        return await applyCommand(target, { ...p, ...skips, yes: values.yes === true, dryRun: values['dry-run'] === true, resume: values.resume === true, breakLock: values['break-lock'] === true, canary: values.canary === true }, io);
      }
    }
  } catch (err) {
    return report(err, io);
  }
}

/** Runs main and, in JSON mode, ends the stream with an `exit` event carrying the exit code. */
async function run(argv: string[]): Promise<number> {
  const io = new Output();
  const code = await main(argv, io);
  io.event('exit', { code });
  return code;
}

function report(err: unknown, io: Output): number {
  if (err instanceof RolloutFailedError) {
    io.err(`\nROLLOUT STOPPED: ${err.message}`);
    return err.restored ? EXIT.rolledBack : EXIT.rollbackFailed;
  }
  if (err instanceof InterruptedError) {
    io.err(`\n${err.message}`);
    return EXIT.interrupted;
  }
  if (err instanceof PreflightError || err instanceof LockHeldError) {
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

// Exit as soon as the command is done: everything it had to finish (state,
// report, lock release) was awaited, and stdout/stderr writes are synchronous
// for files, pipes and terminals on Linux. Waiting for every node's SSH
// connection to close gracefully (each sshd ending its sessions) adds nothing but time.
process.exit(await run(process.argv.slice(2)));
