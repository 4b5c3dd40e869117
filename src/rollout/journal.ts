// The only journalctl and systemctl calls: a cursor before a restart, a follow
// from it, and the unit's state. Parsing is pure and tested from fixtures.
import { RemoteCommandError } from '../errors.js';
import type { LineStream, Transport } from '../transport/transport.js';
import { shellQuote } from '../util/shell-quote.js';

/** One journal entry of the unit, as the gate sees it. */
export type JournalEntry = {
  cursor: string;
  /** Microseconds since the epoch, from the journal (not the node's clock at read time). */
  realtimeUs: number;
  /** The text, ANSI colour codes stripped. */
  message: string;
  /** true for lines systemd itself (PID 1) logs about the unit: started, exited, restart scheduled. */
  fromManager: boolean;
  /** The unit invocation the line belongs to (`_SYSTEMD_INVOCATION_ID`, or `INVOCATION_ID` on manager lines). */
  invocationId: string | null;
};

/** The unit's state from `systemctl show`. */
export type ServiceState = { activeState: string; subState: string; nRestarts: number; invocationId: string; mainPid: number };

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;

/** Pure. Removes ANSI escape sequences (the ready line is coloured). */
export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

/** Pure. One line of `journalctl -o json`; null for anything that is not an entry. */
export function parseJournalLine(line: string): JournalEntry | null {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (typeof o.__CURSOR !== 'string') return null;
  const raw = o.MESSAGE;
  // journald stores non-UTF-8 messages as an array of bytes.
  const message = Array.isArray(raw) ? Buffer.from(raw as number[]).toString('utf8') : typeof raw === 'string' ? raw : '';
  const fromManager = o._PID === '1';
  const inv = (fromManager ? o.INVOCATION_ID : o._SYSTEMD_INVOCATION_ID) ?? o._SYSTEMD_INVOCATION_ID ?? o.INVOCATION_ID;
  return {
    cursor: o.__CURSOR,
    realtimeUs: Number(o.__REALTIME_TIMESTAMP ?? 0),
    message: stripAnsi(message),
    fromManager,
    invocationId: typeof inv === 'string' ? inv : null,
  };
}

/** The `systemctl show` properties every state read asks for. */
export const SHOW_PROPERTIES = 'ActiveState,SubState,NRestarts,InvocationID,MainPID';

// Prints the unit's journal entries after cursor $C as they come, polling every
// 50 ms on the node (journalctl -f wakes up only when journald posts a change,
// which it batches: up to 250 ms late). After each batch of entries, the unit's
// state as systemd sees it then (between @now-begin and @now-end): a ready line
// can be judged against the invocation running after it without another
// command. A heartbeat line per poll ends the loop as soon as rollout closes
// the channel (the write fails); `timeout` bounds it. The signal traps turn
// those ends into an exit, so the cursor file is removed. Every process counts
// (each costs a node 20-30 ms): an idle poll forks only journalctl and sleep.
const POLL_LOOP = `[ -d /run/rollout ] || mkdir -p -m 0700 /run/rollout
f=/run/rollout/cursor.$$; trap 'rm -f -- "$f"' EXIT; trap 'exit 1' TERM HUP INT PIPE; printf '%s' "$C" > "$f"
while :; do
  out=$(journalctl -u "$u" --cursor-file="$f" -o json --no-pager -q) || exit 1
  if [ -n "$out" ]; then
    printf '%s\n' "$out"
    echo @now-begin; systemctl show -p ${SHOW_PROPERTIES} -- "$u"; echo @now-end
  fi
  echo .
  sleep 0.05
done`;

/** A staged file to move into place right before a restart (see stageFiles). */
export type StagedCommit = { path: string; staged: string; beforeSha256: string; afterSha256: string; uid: number; gid: number; mode: number };

// Moves staged files into place, all checked first: every target must still
// hold its planned old content (or already the new one), else `@stale PATH`
// and nothing is touched; every staged copy must hold the new content with the
// planned owner and mode. Then each is renamed over its target (atomic) and the
// directory fsynced (`@file PATH`). Arguments: groups of 7 (path, staged,
// before, after, uid, gid, octal mode). Four processes a file: sha256sum (both
// files), stat, mv, sync.
const COMMIT_FUNCTIONS = `check_all() {
  while [ $# -gt 0 ]; do
    sums=$(sha256sum -- "$1" "$2" 2>/dev/null)
    cur=\${sums%% *}; [ -e "$1" ] || cur=missing
    if [ "$cur" != "$3" ] && [ "$cur" != "$4" ]; then echo "@stale $1"; return 1; fi
    if [ "$cur" != "$4" ]; then
      staged=\${sums#*
}; staged=\${staged%% *}
      [ "$staged" = "$4" ] || { echo "@error the staged copy of $1 is missing or not the planned content"; return 2; }
      [ "$(stat -L -c '%u %g %a' -- "$2")" = "$5 $6 $7" ] || { echo "@error the staged copy of $1 does not have the planned owner and mode"; return 2; }
    fi
    shift 7
  done
}
commit_all() {
  while [ $# -gt 0 ]; do
    if [ -e "$2" ]; then
      mv -f -- "$2" "$1" || { echo "@error cannot move the staged copy of $1 into place"; return 1; }
      sync -- "\${1%/*}/"
    fi
    echo "@file $1"
    shift 7
  done
}`;

// The two halves of a commit as script steps: a stale target ends the script
// with nothing touched (exit 0 after `@stale`), a bad staged copy or a failed
// move with exit 1.
const CHECK_STEP = 'check_all "$@"; rc=$?; [ $rc = 1 ] && exit 0; [ $rc = 0 ] || exit 1';
const MOVE_STEP = 'commit_all "$@" || exit 1\necho @committed';

// The moves without a restart.
const COMMIT_STEP = `${COMMIT_FUNCTIONS}\n${CHECK_STEP}\n${MOVE_STEP}`;

function commitArgs(commits: readonly StagedCommit[]): string {
  return commits.flatMap((c) => [c.path, c.staged, c.beforeSha256, c.afterSha256, String(c.uid), String(c.gid), c.mode.toString(8)]).map(shellQuote).join(' ');
}

/**
 * The remote half of a restart, one command on one channel. At once, changing
 * nothing: every staged file and its target checked (`@stale`, `@error`), the
 * unit's state and a journal cursor (`@svc`, `@cursor`), so that none of it
 * waits on the critical path. Then it waits for a line on stdin: `ping` is
 * answered `@pong` (the link is alive), anything else but `go` ends it with
 * nothing touched (the cluster health check runs meanwhile).
 * On `go`: the staged files moved into place (`@file`, `@committed`,
 * `@error`), the restart bounded by a timeout (`@restarted CODE`), then every
 * journal entry of the unit after the cursor, as JSON lines, until rollout
 * closes the channel. `maxSeconds` bounds the whole channel, the wait included.
 */
export function restartAndFollow(t: Transport, unit: string, restartTimeoutSeconds: number, maxSeconds: number, commits: readonly StagedCommit[] = []): LineStream {
  // Under the fleet lock only a human can change a file between the check and
  // the move, as before (the window is longer, not new). A unit that restarts
  // by itself after @svc cannot pass for the new one: the gate wants the ready
  // line from the invocation still running after it.
  const script = `u=$1; shift
${COMMIT_FUNCTIONS}
${CHECK_STEP}
svc=$(systemctl show -p ${SHOW_PROPERTIES} -- "$u")
printf '@svc-begin\n%s\n@svc-end\n' "$svc"
C=$(journalctl -n 0 --show-cursor -q); C=\${C#*-- cursor: }
[ -n "$C" ] || { echo "@error no journal cursor"; exit 1; }
echo "@cursor $C"
while IFS= read -r word && [ "$word" = ping ]; do echo @pong; done
[ "$word" = go ] || exit 0
${MOVE_STEP}
# A failed unit (a restart after a failed gate) may have hit its start limit.
case $svc in *ActiveState=active*) ;; *) systemctl reset-failed -- "$u" 2>/dev/null;; esac
timeout ${Math.ceil(restartTimeoutSeconds)} systemctl restart -- "$u"; echo "@restarted $?"
${POLL_LOOP}`;
  const args = commits.length > 0 ? ` ${commitArgs(commits)}` : '';
  return t.stream(`exec timeout ${Math.ceil(maxSeconds)} sh -c ${shellQuote(script)} rollout-restart ${shellQuote(unit)}${args}`, { input: true });
}

/**
 * Moves staged files into place without a restart (a phase whose files need
 * none): the same checks as before a restart. Returns `stale` (nothing touched)
 * or `committed`; throws when a move or its verification failed.
 */
export async function commitStaged(t: Transport, commits: readonly StagedCommit[]): Promise<'committed' | 'stale'> {
  const r = await t.exec(`sh -c ${shellQuote(COMMIT_STEP)} rollout-commit ${commitArgs(commits)}`, { timeoutMs: 60_000 });
  const out = r.stdout.toString('utf8');
  if (out.includes('@stale ')) return 'stale';
  if (r.code !== 0 || !out.includes('@committed')) {
    const why = /^@error (.*)$/m.exec(out)?.[1] ?? r.stderr.trim();
    throw new RemoteCommandError(t.name, 'moving the staged files into place', r.code, why);
  }
  return 'committed';
}

/** Journal entries of the unit after `cursor`, as restartAndFollow prints them (a follow reopened after a lost link). */
export function followFrom(t: Transport, unit: string, cursor: string, maxSeconds: number): LineStream {
  const script = `u=$1; C=$2\n${POLL_LOOP}`;
  return t.stream(`exec timeout ${Math.ceil(maxSeconds)} sh -c ${shellQuote(script)} rollout-follow ${shellQuote(unit)} ${shellQuote(cursor)}`);
}

/** Pure. Parses `systemctl show -p ...` output. */
export function parseServiceState(text: string): ServiceState {
  const kv = Object.fromEntries(text.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  return {
    activeState: kv.ActiveState ?? 'unknown',
    subState: kv.SubState ?? 'unknown',
    nRestarts: Number(kv.NRestarts ?? 0),
    invocationId: kv.InvocationID ?? '',
    mainPid: Number(kv.MainPID ?? 0),
  };
}

/** The unit's current state; `systemctl is-active` alone cannot tell a crash loop. */
export async function readServiceState(t: Transport, unit: string): Promise<ServiceState> {
  const r = await t.exec(`systemctl show -p ${SHOW_PROPERTIES} -- ${shellQuote(unit)}`, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new RemoteCommandError(t.name, `systemctl show ${unit}`, r.code, r.stderr);
  return parseServiceState(r.stdout.toString('utf8'));
}
