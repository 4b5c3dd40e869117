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
  /** The process that logged it (`_PID`), where the entry says. */
  pid?: number;
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
    ...(typeof o._PID === 'string' && /^\d+$/.test(o._PID) ? { pid: Number(o._PID) } : {}),
  };
}

/** The `systemctl show` properties every state read asks for. */
export const SHOW_PROPERTIES = 'ActiveState,SubState,NRestarts,InvocationID,MainPID';

// The process that logged the batch's first line holding the ready text ($out,
// $R, $B), right after the batch, read with shell builtins (no process):
// `ready_main` is true, with its pid in $p, when it is alive (not a zombie),
// a child of PID 1 and in the unit's own cgroup: the unit's main process, so
// the unit is active in the invocation that logged the line. (systemctl would
// tell as much, at about 20 ms of the node's CPU, and on the critical path.)
const READY_PROCESS = `nl='
'; case $u in *.*) un=$u;; *) un=$u.service;; esac
ready_main() {
  p=; rest=$out
  while [ -n "$rest" ]; do
    l=\${rest%%"$nl"*}; case $rest in *"$nl"*) rest=\${rest#*"$nl"};; *) rest=;; esac
    case $l in *"$R"*|*"$B"*) ;; *) continue;; esac
    case $l in *'"_PID":"'*) p=\${l#*'"_PID":"'}; p=\${p%%'"'*};; esac
    break
  done
  case $p in ''|*[!0-9]*) return 1;; esac
  [ -r /proc/$p/stat ] && IFS= read -r st < /proc/$p/stat || return 1
  set -- \${st##*) }
  [ "$1" != Z ] && [ "$1" != X ] && [ "$2" = 1 ] || return 1
  while IFS= read -r c; do case $c in *"/$un") return 0;; esac; done < /proc/$p/cgroup
  return 1
}`;

// Prints the unit's journal entries after cursor $C as they come, polling every
// 50 ms on the node (journalctl -f wakes up only when journald posts a change,
// which it batches: up to 250 ms late). Right after a batch that holds the
// ready text ($R or $B, see readyHint; both empty: every batch), the unit's
// state, so that a ready line can be judged against the invocation running
// after it without another command: `@alive PID` where the line's own process
// is the unit's main process and alive (READY_PROCESS), else systemctl's
// answer between @now-begin and @now-end. Not after the other batches: they
// come while the service starts, which wants the CPU systemctl would take. A
// heartbeat line per poll ends the loop as soon as rollout closes the channel
// (the write fails); `timeout` bounds it. The signal traps turn those ends
// into an exit, so the cursor file is removed. Every process counts
// (journalctl costs a node about 20 ms of CPU, sleep about 7, measured): an
// idle poll forks only journalctl and sleep. (bash's `read -t` would pause
// without a process, but a fork of bash costs about 2.5 ms more than one of
// dash, and the shorter pause means more polls: measured, no gain.)
const POLL_LOOP = `[ -d /run/rollout ] || mkdir -p -m 0700 /run/rollout
f=/run/rollout/cursor.$$; trap 'rm -f -- "$f"' EXIT; trap 'exit 1' TERM HUP INT PIPE; printf '%s' "$C" > "$f"
${READY_PROCESS}
while :; do
  out=$(journalctl -u "$u" --cursor-file="$f" -o json --no-pager -q) || exit 1
  if [ -n "$out" ]; then
    printf '%s\n' "$out"
    case $out in *"$R"*|*"$B"*)
      if [ -n "$R" ] && ready_main; then echo "@alive $p"
      else echo @now-begin; systemctl show -p ${SHOW_PROPERTIES} -- "$u"; echo @now-end; fi;;
    esac
  fi
  echo .
  sleep 0.05
done`;

/**
 * Pure. The ready text as it appears inside journalctl's JSON, for the poll's
 * test (see POLL_LOOP): as text (a printable message) and as decimal bytes
 * joined by commas (a message with colour codes is printed as an array of
 * bytes). Both '' when the text is not printable ASCII without a quote or
 * backslash (JSON would escape those): every batch is then followed by the
 * unit's state. A ready line the test misses (its text split by colour codes,
 * say) still passes the gate; its state is then read apart.
 */
export function readyHint(ready: string): { text: string; bytes: string } {
  if (!/^[\x20-\x7e]+$/.test(ready) || /["\\]/.test(ready)) return { text: '', bytes: '' };
  return { text: ready, bytes: [...Buffer.from(ready, 'latin1')].join(',') };
}

// The hint as the scripts' arguments $R and $B.
function hintArgs(ready: string): string {
  const h = readyHint(ready);
  return `${shellQuote(h.text)} ${shellQuote(h.bytes)}`;
}

/** A staged file to move into place right before a restart (see stageFiles). */
export type StagedCommit = { path: string; staged: string; beforeSha256: string; afterSha256: string; uid: number; gid: number; mode: number };

// Moves staged files into place, all checked first: every target must still
// hold its planned old content (or already the new one), else `@stale PATH`
// and nothing is touched; every staged copy must hold the new content with the
// planned owner and mode. Then each is renamed over its target (atomic), and
// their directories fsynced by one sync (`@file PATH` each, after it). A
// staged copy that is a link or not a regular file is refused. The list comes
// first on stdin (READ_COMMITS: a count, then 7 lines a file: path, staged,
// before, after, uid, gid, octal mode), so `ps` on the node shows none of it.
const READ_COMMITS = `IFS= read -r n || exit 1; set --; i=0
while [ $i -lt $((n * 7)) ]; do IFS= read -r a || exit 1; set -- "$@" "$a"; i=$((i + 1)); done`;
const COMMIT_FUNCTIONS = `check_all() {
  while [ $# -gt 0 ]; do
    sums=$(sha256sum -- "$1" "$2" 2>/dev/null)
    cur=\${sums%% *}; [ -e "$1" ] || cur=missing
    if [ "$cur" != "$3" ] && [ "$cur" != "$4" ]; then echo "@stale $1"; return 1; fi
    if [ "$cur" != "$4" ]; then
      if [ -L "$2" ] || [ ! -f "$2" ]; then echo "@error the staged copy of $1 is missing or not a regular file"; return 2; fi
      staged=\${sums#*
}; staged=\${staged%% *}
      [ "$staged" = "$4" ] || { echo "@error the staged copy of $1 is not the planned content"; return 2; }
      [ "$(stat -c '%u %g %a' -- "$2")" = "$5 $6 $7" ] || { echo "@error the staged copy of $1 does not have the planned owner and mode"; return 2; }
    fi
    shift 7
  done
}
flush() { [ -z "$dirs" ] || (set -f; IFS=$nl; exec sync -- $dirs); }
commit_all() {
  nl='
'; dirs=; moved=
  while [ $# -gt 0 ]; do
    if [ -e "$2" ]; then
      mv -f -T -- "$2" "$1" || { echo "@error cannot move the staged copy of $1 into place"; flush; return 1; }
      dirs=$dirs\${1%/*}/$nl
    fi
    moved=$moved$1$nl
    shift 7
  done
  flush || { echo "@error cannot fsync the directories of the moved files"; return 1; }
  while [ -n "$moved" ]; do printf '@file %s\n' "\${moved%%"$nl"*}"; moved=\${moved#*"$nl"}; done
}`;

// The two halves of a commit as script steps: a stale target ends the script
// with nothing touched (exit 0 after `@stale`), a bad staged copy or a failed
// move with exit 1.
const CHECK_STEP = 'check_all "$@"; rc=$?; [ $rc = 1 ] && exit 0; [ $rc = 0 ] || exit 1';
const MOVE_STEP = 'commit_all "$@" || exit 1\necho @committed';

// The moves without a restart.
const COMMIT_STEP = `${READ_COMMITS}\n${COMMIT_FUNCTIONS}\n${CHECK_STEP}\n${MOVE_STEP}`;

/** Pure. READ_COMMITS's stdin for these commits. */
export function commitRequest(commits: readonly StagedCommit[]): string {
  const lines = commits.flatMap((c) => [c.path, c.staged, c.beforeSha256, c.afterSha256, String(c.uid), String(c.gid), c.mode.toString(8)]);
  const odd = lines.find((l) => l.includes('\n'));
  if (odd !== undefined) throw new Error(`cannot move ${JSON.stringify(odd)} into place: a path with a newline`);
  return `${[String(commits.length), ...lines].join('\n')}\n`;
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
export function restartAndFollow(t: Transport, unit: string, restartTimeoutSeconds: number, maxSeconds: number, commits: readonly StagedCommit[] = [], ready = ''): LineStream {
  // Under the fleet lock only a human can change a file between the check and
  // the move, as before (the window is longer, not new). A unit that restarts
  // by itself after @svc cannot pass for the new one: the gate wants the ready
  // line from the invocation still running after it.
  const script = `u=$1; R=$2; B=$3
${READ_COMMITS}
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
  const stream = t.stream(`exec timeout ${Math.ceil(maxSeconds)} sh -c ${shellQuote(script)} rollout-restart ${shellQuote(unit)} ${hintArgs(ready)}`, { input: true });
  stream.send(commitRequest(commits));
  return stream;
}

/**
 * Moves staged files into place without a restart (a phase whose files need
 * none): the same checks as before a restart. Returns `stale` (nothing touched)
 * or `committed`; throws when a move or its verification failed.
 */
export async function commitStaged(t: Transport, commits: readonly StagedCommit[]): Promise<'committed' | 'stale'> {
  const r = await t.exec(`sh -c ${shellQuote(COMMIT_STEP)} rollout-commit`, { stdin: Buffer.from(commitRequest(commits)), timeoutMs: 60_000 });
  const out = r.stdout.toString('utf8');
  if (out.includes('@stale ')) return 'stale';
  if (r.code !== 0 || !out.includes('@committed')) {
    const why = /^@error (.*)$/m.exec(out)?.[1] ?? r.stderr.trim();
    throw new RemoteCommandError(t.name, 'moving the staged files into place', r.code, why);
  }
  return 'committed';
}

/** Journal entries of the unit after `cursor`, as restartAndFollow prints them (a follow reopened after a lost link). */
export function followFrom(t: Transport, unit: string, cursor: string, maxSeconds: number, ready = ''): LineStream {
  const script = `u=$1; C=$2; R=$3; B=$4\n${POLL_LOOP}`;
  return t.stream(`exec timeout ${Math.ceil(maxSeconds)} sh -c ${shellQuote(script)} rollout-follow ${shellQuote(unit)} ${shellQuote(cursor)} ${hintArgs(ready)}`);
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
