// The node-side agent: the shell scripts in this folder, read once and
// assembled per verb as a prelude (the constants below as shell variables), the
// function files a verb needs, and its main line. Run as `sh -c SCRIPT rollout-<verb> ARGS`.
import { readFileSync } from 'node:fs';
import { shellQuote } from '../util/shell-quote.js';

/** Where a node's lock lives (tmpfs: a reboot clears it). */
export const LOCK_FILE = '/run/rollout/lock.json';

/** Where every run's backups live on a node (root-only). */
export const BACKUP_ROOT = '/var/backups/rollout';

/** The `systemctl show` properties every state read asks for. */
export const SHOW_PROPERTIES = 'ActiveState,SubState,NRestarts,InvocationID,MainPID';

/** Pure. Shell assignments of `vars`, one a line, to put before a script. */
export function shellVars(vars: Readonly<Record<string, string>>): string {
  return Object.entries(vars).map(([k, v]) => `${k}=${shellQuote(v)}\n`).join('');
}

/** The prelude's shell variables: every path and name the scripts share with the TypeScript side. */
export const AGENT_VARS: Readonly<Record<string, string>> = {
  LOCK_FILE,
  RUN_DIR: LOCK_FILE.slice(0, LOCK_FILE.lastIndexOf('/')),
  BACKUP_ROOT,
  SHOW_PROPERTIES,
  // Where journald keeps its files (volatile, then persistent), split on spaces.
  JOURNAL_DIRS: '/run/log/journal /var/log/journal',
};

const PRELUDE = shellVars(AGENT_VARS);

// A file's text without its comment lines (they stay in the source, not on the wire).
const files = new Map<string, string>();
function file(name: string): string {
  let text = files.get(name);
  if (text === undefined) {
    text = readFileSync(new URL(name, import.meta.url), 'utf8').replace(/^[ \t]*#.*\n/gm, '');
    files.set(name, text);
  }
  return text;
}

function verb(names: readonly string[], main: string): string {
  return `${PRELUDE}${names.map(file).join('')}${main}\n`;
}

/** The shell files, in this folder, that make up the agent. */
export const AGENT_FILES = ['lock.sh', 'read.sh', 'check.sh', 'stage.sh', 'commit.sh', 'follow.sh', 'restart.sh', 'state.sh', 'release.sh', 'restore.sh', 'ready.sh', 'cluster.sh'] as const;

/**
 * Each verb's whole script. Arguments and stdin are described in its .sh file.
 * `checks` defines `node_checks` only: its caller adds the call with its arguments.
 * `restart` wants RESTART_TIMEOUT set before it (shellVars).
 * `ready` asks the node's own KMS API (ready.sh): `ready|version HOST:PORT CA INSECURE SECONDS`.
 * `cluster` asks the cluster through its CLI (cluster.sh): `stat|backup HOST:PORT CA INSECURE CLI [FILE]`, the API key on stdin.
 */
export const AGENT = {
  read: verb(['read.sh'], 'read_files "$@"'),
  lock: verb(['lock.sh'], 'take_lock'),
  relock: verb(['lock.sh'], 'replace_lock'),
  checks: verb(['check.sh'], ''),
  stage: verb(['stage.sh'], 'stage_files'),
  commit: verb(['commit.sh'], 'with_commits commit_staged'),
  restart: verb(['commit.sh', 'follow.sh', 'restart.sh'], 'restart_and_follow "$@"'),
  follow: verb(['follow.sh'], 'follow_from "$@"'),
  state: verb(['stage.sh', 'release.sh', 'ready.sh', 'state.sh'], 'probe_state "$@"'),
  ready: verb(['ready.sh'], 'api_ask "$@"'),
  cluster: verb(['cluster.sh'], 'cluster_ask "$@"'),
  release: verb(['release.sh'], 'release_lock'),
  restore: verb(['restore.sh'], 'restore_file'),
} as const;
