// An in-memory fleet for orchestration tests: nodes with files, a unit, a
// journal and a link that can be cut. Each remote command is recognised by its
// `rollout-<verb>` name ($0 of `sh -c SCRIPT rollout-<verb> ARGS`) and answered
// in that verb's wire protocol, never by the script's text.
import { ConnectionLostError } from '../../src/errors.js';
import type { NodeTarget } from '../../src/inventory/load.js';
import type { ExecResult, LineStream, Transport } from '../../src/transport/transport.js';
import { sha256 } from '../../src/util/sha256.js';

export type MemoryFile = { content: Buffer; uid: number; gid: number; mode: number };
export type MemoryUnit = { invocationId: string; mainPid: number; activeState: string; subState: string; nRestarts: number };
type Entry = { message: string; pid: number; invocationId: string; fromManager: boolean };

/** When a node's link is cut: right before `go` arrives, right after it (files moved, restart asked), or during the gate. */
export type CutAt = 'before-go' | 'after-go' | 'during-gate';

let counter = 100;

/** One node: its files, its unit, its journal, its link. */
export class MemoryNode {
  readonly name: string;
  readonly files = new Map<string, MemoryFile>();
  unit: MemoryUnit;
  readonly journal: Entry[] = [];
  /** Whether a restart on the files as they are fails (a crash loop); default: never. */
  failsOn: (files: Map<string, MemoryFile>) => boolean = () => false;
  cutAt: CutAt | null = null;
  cut = false;
  /** Told when `go` arrives on a restart channel, before anything moves (tests edit the fleet here). */
  onGo?: () => void;
  /** Told once the moves of a `go` are done, before the restart. */
  onCommitted?: () => void;
  /** The HTTP status the node's own /v1/health/ready answers with its files as they are; default 200. */
  apiReady: (files: Map<string, MemoryFile>) => number = () => 200;
  /** What /version answers (null: no answer, as with the API down). */
  apiVersion: string | null = '2025-03-12T09-35-18Z';
  /** Every API question asked on the node: `ready|version HOST CA INSECURE SECONDS` (the verb) or `probe K HOST CA` (the probe). */
  readonly apiAsked: string[] = [];
  /** How many `ping`s its restart channels were sent. */
  pings = 0;
  readonly verbs: string[] = [];
  /** What the cluster's CLI answers here (cluster.sh's lines for `stat|backup HOST CA K CLI`, a backup's path from stdin); null: no CLI (exit 127). */
  clusterCli: ((args: string[], key: string, file: string) => string[]) | null = null;
  /** Every cluster question: its arguments and what came on stdin (the key, a backup's path). */
  readonly clusterAsked: { args: string[]; key: string; file: string }[] = [];
  readonly #ready: string;
  readonly #streams = new Set<{ end(): void }>();

  constructor(name: string, ready: string) {
    this.name = name;
    this.#ready = ready;
    this.unit = { invocationId: `inv-${name}-${counter++}`, mainPid: counter++, activeState: 'active', subState: 'running', nRestarts: 0 };
  }

  write(path: string, text: string, mode = 0o640): void {
    this.files.set(path, { content: Buffer.from(text), uid: 0, gid: 0, mode });
  }

  text(path: string): string | undefined {
    return this.files.get(path)?.content.toString('utf8');
  }

  /** Cuts the link now: every channel ends, every later command fails to open. */
  cutLink(): void {
    this.cut = true;
    for (const s of this.#streams) s.end();
    this.#streams.clear();
  }

  /** The unit crashes by itself (another node's health check must notice). */
  crash(): void {
    this.unit = { ...this.unit, activeState: 'failed', subState: 'failed', mainPid: 0 };
  }

  stateText(): string {
    const u = this.unit;
    return `ActiveState=${u.activeState}\nSubState=${u.subState}\nNRestarts=${u.nRestarts}\nInvocationID=${u.invocationId}\nMainPID=${u.mainPid}`;
  }

  #manager(message: string, inv: string): void {
    this.journal.push({ message, pid: 1, invocationId: inv, fromManager: true });
  }

  /** A restart as systemd logs it: the old invocation stops, a new one starts and logs the ready line, or crash-loops. */
  restart(): void {
    const old = this.unit.invocationId;
    this.#manager('Stopping minkms.service - MinIO KMS...', old);
    this.#manager('minkms.service: Deactivated successfully.', old);
    this.#manager('Stopped minkms.service - MinIO KMS.', old);
    const inv = `inv-${this.name}-${counter++}`;
    const pid = counter++;
    this.#manager('Started minkms.service - MinIO KMS.', inv);
    if (this.failsOn(this.files)) {
      this.journal.push({ message: 'Error: cannot unseal the HSM key', pid, invocationId: inv, fromManager: false });
      this.#manager('minkms.service: Main process exited, code=exited, status=1/FAILURE', inv);
      this.unit = { invocationId: inv, mainPid: 0, activeState: 'activating', subState: 'auto-restart', nRestarts: this.unit.nRestarts + 1 };
      return;
    }
    this.journal.push({ message: `${this.#ready} (pid ${pid})`, pid, invocationId: inv, fromManager: false });
    this.unit = { invocationId: inv, mainPid: pid, activeState: 'active', subState: 'running', nRestarts: this.unit.nRestarts };
  }

  journalLine(i: number): string {
    const e = this.journal[i]!;
    return JSON.stringify({
      __CURSOR: `c${i + 1}`,
      __REALTIME_TIMESTAMP: String(1_700_000_000_000_000 + i),
      MESSAGE: e.message,
      _PID: String(e.pid),
      ...(e.fromManager ? { INVOCATION_ID: e.invocationId } : { _SYSTEMD_INVOCATION_ID: e.invocationId }),
    });
  }

  track(s: { end(): void }): void {
    this.#streams.add(s);
  }
}

/** Pure. The words of a command line as sh splits them (single and double quotes, backslashes). */
export function shellWords(command: string): string[] {
  const words: string[] = [];
  let cur: string | null = null;
  for (let i = 0; i < command.length; i++) {
    const c = command[i]!;
    if (c === "'") {
      const end = command.indexOf("'", i + 1);
      cur = (cur ?? '') + command.slice(i + 1, end);
      i = end;
    } else if (c === '\\') {
      cur = (cur ?? '') + command[++i];
    } else if (c === '"') {
      let s = '';
      for (i++; command[i] !== '"'; i++) s += command[i] === '\\' ? command[++i] : command[i];
      cur = (cur ?? '') + s;
    } else if (/\s/.test(c)) {
      if (cur !== null) words.push(cur);
      cur = null;
    } else cur = (cur ?? '') + c;
  }
  if (cur !== null) words.push(cur);
  return words;
}

// stdin as the node's script reads it: lines, and exact byte counts.
class Stdin {
  #buf = Buffer.alloc(0);
  #closed = false;
  #wake: (() => void) | null = null;
  push(b: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, b]);
    this.#wake?.();
  }
  close(): void {
    this.#closed = true;
    this.#wake?.();
  }
  async #wait(): Promise<boolean> {
    if (this.#closed) return false;
    await new Promise<void>((r) => (this.#wake = r));
    this.#wake = null;
    return true;
  }
  /** Whether the last line() ended at a newline (not at the end of stdin). */
  newline = true;
  async line(): Promise<string | null> {
    for (;;) {
      const nl = this.#buf.indexOf(0x0a);
      if (nl >= 0) {
        const l = this.#buf.subarray(0, nl).toString('utf8');
        this.#buf = this.#buf.subarray(nl + 1);
        this.newline = true;
        return l;
      }
      if (!(await this.#wait())) {
        if (this.#buf.length === 0) return null;
        const l = this.#buf.toString('utf8');
        this.#buf = Buffer.alloc(0);
        this.newline = false;
        return l;
      }
    }
  }
  async bytes(n: number): Promise<Buffer> {
    while (this.#buf.length < n) if (!(await this.#wait())) break;
    const b = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return b;
  }
}

type Out = { line(text: string): void; raw(b: Buffer): void };
const shaOf = (f: MemoryFile | undefined) => (f ? sha256(f.content) : 'missing');
const BACKUP_ROOT = '/var/backups/rollout';
const LOCK_FILE = '/run/rollout/lock.json';

/** The fleet: connect() opens an in-memory Transport to a node by name. */
export class MemoryFleet {
  readonly nodes = new Map<string, MemoryNode>();

  constructor(names: readonly string[], ready: string) {
    for (const n of names) this.nodes.set(n, new MemoryNode(n, ready));
  }

  node(name: string): MemoryNode {
    return this.nodes.get(name)!;
  }

  /**
   * Every node answers `minkms stat --json` (and `backup`) as one MinKMS cluster
   * of the fleet's nodes, each at `NAME:7373`, plus `extra` members: up while
   * its unit is active and it is not in `dropped` (then no member at all); the
   * leader is `leader` while up, else the first node up. `key` is the only API
   * key it accepts.
   */
  serveCluster(opts: { key: string; leader: string; extra?: Record<string, boolean>; dropped?: Set<string>; backupFails?: boolean }): void {
    const status = () => {
      const up: Record<string, unknown> = {};
      const down: Record<string, string> = {};
      const live = [...this.nodes.values()].filter((n) => !opts.dropped?.has(n.name));
      const isUp = (n: MemoryNode) => n.unit.activeState === 'active';
      const leader = live.find((n) => n.name === opts.leader && isUp(n)) ?? live.find(isUp);
      live.forEach((n, i) => {
        if (isUp(n)) up[String(i)] = { address: `${n.name}:7373`, state: n === leader ? 'Leader' : 'Follower' };
        else down[String(i)] = `${n.name}:7373`;
      });
      Object.entries(opts.extra ?? {}).forEach(([address, isUpExtra], j) => {
        if (isUpExtra) up[String(live.length + j)] = { address, state: 'Follower' };
        else down[String(live.length + j)] = address;
      });
      return JSON.stringify({ nodes_up: up, nodes_down: down });
    };
    for (const node of this.nodes.values()) {
      node.clusterCli = (args, key, file) => {
        if (key !== opts.key) return ['@out Error: not authorized: invalid API key', '@cluster 1'];
        if (args[0] === 'stat') return [`@out ${status()}`, '@cluster 0'];
        if (opts.backupFails) return ['@out Error: backup failed: disk full', '@cluster 1'];
        const content = `backup of ${node.name}`;
        node.write(file, content, 0o600);
        return [`@sha ${sha256(Buffer.from(content))} ${content.length}`, `@out ${file}`, '@cluster 0'];
      };
    }
  }

  connect = async (target: NodeTarget): Promise<Transport> => {
    const node = this.node(target.name);
    if (node.cut) throw new ConnectionLostError(node.name, 'unreachable: connection refused', false);
    return new MemoryTransport(node);
  };
}

class MemoryTransport implements Transport {
  readonly name: string;
  readonly #node: MemoryNode;
  constructor(node: MemoryNode) {
    this.#node = node;
    this.name = node.name;
  }

  async exec(command: string, opts: { stdin?: Buffer } = {}): Promise<ExecResult> {
    const node = this.#node;
    if (node.cut) throw new ConnectionLostError(node.name, 'connection lost', false);
    const stdin = new Stdin();
    if (opts.stdin) stdin.push(opts.stdin);
    stdin.close();
    const chunks: Buffer[] = [];
    const out: Out = { line: (t) => chunks.push(Buffer.from(`${t}\n`)), raw: (b) => chunks.push(b) };
    const code = await run(node, command, stdin, out, { open: true });
    return { code, stdout: Buffer.concat(chunks), stderr: '' };
  }

  stream(command: string, opts: { input?: boolean } = {}): LineStream {
    const node = this.#node;
    const queue: string[] = [];
    let ended = false;
    let wake: (() => void) | null = null;
    const stdin = new Stdin();
    const state = { open: true };
    const end = () => {
      ended = true;
      state.open = false;
      stdin.close();
      wake?.();
    };
    const started = !node.cut;
    if (started) {
      node.track({ end });
      if (!opts.input) stdin.close();
      const out: Out = {
        line: (t) => {
          if (ended) return;
          queue.push(t);
          wake?.();
        },
        raw: () => undefined,
      };
      void run(node, command, stdin, out, state).finally(() => {
        if (!queue.length) end();
        else {
          ended = true;
          wake?.();
        }
      });
    }
    const failure = started ? null : new ConnectionLostError(node.name, 'unreachable: no SSH channel could be opened', false);
    return {
      lines: {
        async *[Symbol.asyncIterator]() {
          if (!started) return;
          for (;;) {
            if (queue.length) {
              yield queue.shift()!;
              continue;
            }
            if (ended || !state.open) return;
            await new Promise<void>((r) => (wake = r));
            wake = null;
          }
        },
      },
      send: (text) => {
        if (!started || ended || !state.open) return false;
        stdin.push(Buffer.from(text));
        return true;
      },
      started: () => started,
      failure: () => failure,
      close: () => {
        state.open = false;
        ended = true;
        stdin.close();
        wake?.();
      },
    };
  }

  close(): void {}
}

// One remote command, answered by its verb; the exit code.
async function run(node: MemoryNode, command: string, stdin: Stdin, out: Out, state: { open: boolean }): Promise<number> {
  const words = shellWords(command);
  const c = words.indexOf('-c');
  const verb = c >= 0 && words[c - 1] === 'sh' ? words[c + 2] ?? '' : '';
  const args = c >= 0 ? words.slice(c + 3) : [];
  if (verb === '' && words[0] === 'systemctl' && words[1] === 'show') {
    node.verbs.push('systemctl-show');
    out.line(node.stateText());
    return 0;
  }
  node.verbs.push(verb);
  switch (verb) {
    case 'rollout-lock': {
      const rec = await stdin.line();
      const lock = node.files.get(LOCK_FILE);
      // The same verb replaces a lock when its record comes without a newline (lockFleet's take-over).
      if (lock && rec !== null && !stdin.newline) {
        node.write(LOCK_FILE, `${rec}\n`, 0o600);
        return 0;
      }
      if (!lock) {
        node.write(LOCK_FILE, `${rec}\n`, 0o600);
        out.line('@lock taken');
      } else out.line(`@lock held ${lock.content.toString('utf8').split('\n')[0]}`);
      return 0;
    }
    case 'rollout-read':
      return read(node, args.slice(1), out);
    case 'rollout-check':
      out.line('@checks-begin');
      out.line('@uid 0');
      out.line(`@lock ${node.text(LOCK_FILE)?.split('\n')[0] ?? ''}`);
      for (let i = 0; i < 16; i++) out.line(`@dir ${i} ok`);
      out.line('@journal ok');
      out.line('@svc-begin');
      out.line(node.stateText());
      out.line('@svc-end');
      out.line('@reach curl 0 200 ');
      out.line('@checks-end');
      return 0;
    case 'rollout-stage':
      return stage(node, stdin, out);
    case 'rollout-commit': {
      const commits = await readCommits(stdin);
      const bad = check(node, commits);
      if (bad) return out.line(bad), bad.startsWith('@stale') ? 0 : 1;
      move(node, commits, out);
      return 0;
    }
    case 'rollout-restore': {
      const [b, p, old, expect] = [await stdin.line(), await stdin.line(), await stdin.line(), await stdin.line()].map((l) => l ?? '') as [string, string, string, string];
      const now = shaOf(node.files.get(p));
      if (now === old) return out.line('@already'), 0;
      if (expect !== '-' && now !== expect) return out.line('@changed'), 0;
      const backup = node.files.get(b);
      if (!backup) return 1;
      node.files.set(p, { ...backup });
      out.line(`${sha256(backup.content)}  ${p}`);
      return 0;
    }
    case 'rollout-release':
      await release(node, stdin, out);
      return 0;
    case 'rollout-probe':
      return probe(node, stdin, out);
    case 'rollout-restart':
      return restart(node, stdin, out, state);
    case 'rollout-cluster': {
      const key = (await stdin.line()) ?? '';
      const file = args[0] === 'backup' ? ((await stdin.line()) ?? '') : '';
      node.clusterAsked.push({ args, key, file });
      for (const l of node.clusterCli ? node.clusterCli(args, key, file) : [`@out ${args[4]}: not found or not executable on this node`, '@cluster 127']) out.line(l);
      return 0;
    }
    case 'rollout-ready': {
      node.apiAsked.push(args.join(' '));
      if (args[0] === 'version') out.line(node.apiVersion === null ? '@api 7 000 Failed to connect' : `@api 0 200 {"version":"${node.apiVersion}"}`);
      else out.line(apiLine(node));
      return 0;
    }
    case 'rollout-follow':
      follow(node, Number(args[1]!.slice(1)), out);
      return 0;
    default:
      throw new Error(`${node.name}: the memory fleet does not know the command ${verb || words.slice(0, 3).join(' ')}`);
  }
}

function read(node: MemoryNode, paths: string[], out: Out): number {
  const stats: string[] = [];
  const reads: string[] = [];
  const dirs = new Set<string>();
  for (const p of paths) {
    const f = node.files.get(p);
    if (!f) continue;
    stats.push(`${(0o100000 | f.mode).toString(16)} ${f.content.length} ${f.uid} ${f.gid} ${p}`);
    reads.push(p);
    for (let d = p.slice(0, p.lastIndexOf('/')); ; d = d.slice(0, d.lastIndexOf('/'))) {
      dirs.add(d || '/');
      if (!d) break;
    }
  }
  for (const d of dirs) stats.push(`41ed 4096 0 0 ${d}`);
  for (const s of stats) out.line(s);
  for (const r of reads) out.line(`@read ${r}`);
  out.line('@data');
  for (const r of reads) out.raw(node.files.get(r)!.content);
  return 0;
}

async function stage(node: MemoryNode, stdin: Stdin, out: Out): Promise<number> {
  const n = Number(await stdin.line());
  const items: string[][] = [];
  for (let i = 0; i < n; i++) {
    const l: string[] = [];
    for (let k = 0; k < 9; k++) l.push((await stdin.line())!);
    items.push(l);
  }
  const contents: Buffer[] = [];
  for (const [, , , size] of items) contents.push(await stdin.bytes(Number(size)));
  items.forEach(([dst, before, after, , owner, mask, mode, bak, staged], i) => {
    const cur = node.files.get(dst!);
    const sum = shaOf(cur);
    if (sum === after) return out.line('@already');
    if (sum !== before) return out.line('@stale');
    const [uid, gid] = owner!.split(':').map(Number) as [number, number];
    node.files.set(staged!, { content: contents[i]!, uid, gid, mode: mode === '-' ? 0o666 & ~parseInt(mask!, 8) : parseInt(mode!, 8) });
    if (cur) node.files.set(bak!, { ...cur });
    out.line('@staged');
  });
  out.line('@done');
  return 0;
}

type Commit = { path: string; staged: string; before: string; after: string };
async function readCommits(stdin: Stdin): Promise<Commit[]> {
  const n = Number(await stdin.line());
  const commits: Commit[] = [];
  for (let i = 0; i < n; i++) {
    const l: string[] = [];
    for (let k = 0; k < 7; k++) l.push((await stdin.line())!);
    commits.push({ path: l[0]!, staged: l[1]!, before: l[2]!, after: l[3]! });
  }
  return commits;
}

// The checks before a move: the @stale or @error line, or null.
function check(node: MemoryNode, commits: Commit[]): string | null {
  for (const c of commits) {
    const cur = shaOf(node.files.get(c.path));
    if (cur !== c.before && cur !== c.after) return `@stale ${c.path}`;
    if (cur !== c.after && shaOf(node.files.get(c.staged)) !== c.after) return `@error the staged copy of ${c.path} is not the planned content`;
  }
  return null;
}

function move(node: MemoryNode, commits: Commit[], out: Out): void {
  for (const c of commits) {
    const staged = node.files.get(c.staged);
    if (staged) {
      node.files.set(c.path, staged);
      node.files.delete(c.staged);
    }
  }
  for (const c of commits) out.line(`@file ${c.path}`);
  out.line('@committed');
}

async function release(node: MemoryNode, stdin: Stdin, out: Out): Promise<void> {
  const rid = (await stdin.line())!;
  const keep = (await stdin.line())!;
  const n = Number(await stdin.line());
  const remove: string[] = [];
  for (let i = 0; i < n; i++) remove.push((await stdin.line())!);
  if (keep !== '-') {
    const runs = [...new Set([...node.files.keys()].filter((p) => p.startsWith(`${BACKUP_ROOT}/`)).map((p) => p.split('/').slice(0, 5).join('/')))].sort();
    for (const d of runs.slice(0, Math.max(0, runs.length - Number(keep)))) {
      out.line(`@pruned ${d}`);
      remove.push(d);
    }
  }
  if (node.text(LOCK_FILE)?.includes(`"runId":"${rid}"`)) remove.push(LOCK_FILE);
  for (const r of remove) for (const p of [...node.files.keys()]) if (p === r || p.startsWith(`${r}/`)) node.files.delete(p);
}

async function probe(node: MemoryNode, stdin: Stdin, out: Out): Promise<number> {
  for (let q = await stdin.line(); q !== null; q = await stdin.line()) {
    if (q === 'stage') {
      const lines: string[] = [];
      const code = await stage(node, stdin, { line: (t) => lines.push(t), raw: () => undefined });
      for (const l of lines) out.line(l);
      out.line(`@stage-end ${code}`);
    } else if (q.startsWith('ready ')) {
      node.apiAsked.push(`probe ${q.slice(6)}`);
      out.line(apiLine(node));
    } else if (q === 'release') {
      await release(node, stdin, out);
      out.line('@released');
    } else {
      out.line(node.stateText());
      out.line('@end');
    }
  }
  return 0;
}

// The answer of /v1/health/ready as src/agent/ready.sh prints it (a stopped unit answers nothing).
function apiLine(node: MemoryNode): string {
  if (node.unit.activeState !== 'active') return '@api 7 000 curl: (7) Failed to connect';
  const status = node.apiReady(node.files);
  return status === 200 ? '@api 0 200 ' : `@api 0 ${status} {"message":"not ready"}`;
}

async function restart(node: MemoryNode, stdin: Stdin, out: Out, state: { open: boolean }): Promise<number> {
  const commits = await readCommits(stdin);
  const bad = check(node, commits);
  if (bad) return out.line(bad), bad.startsWith('@stale') ? 0 : 1;
  out.line('@svc-begin');
  out.line(node.stateText());
  out.line('@svc-end');
  const cursor = node.journal.length;
  out.line(`@cursor c${cursor}`);
  let word = await stdin.line();
  while (word === 'ping') {
    node.pings++;
    out.line('@pong');
    word = await stdin.line();
  }
  if (word !== 'go') return 0;
  if (node.cutAt === 'before-go') return node.cutLink(), 1;
  node.onGo?.();
  if (!state.open) return 1;
  move(node, commits, out);
  node.onCommitted?.();
  node.restart();
  out.line('@restarted 0');
  if (node.cutAt === 'after-go') return node.cutLink(), 1;
  if (node.cutAt === 'during-gate') {
    out.line(node.journalLine(cursor));
    return node.cutLink(), 1;
  }
  follow(node, cursor, out);
  return 0;
}

// The journal after the cursor, then the unit's state when a line of the main process came (follow.sh prints it after the ready line's batch).
function follow(node: MemoryNode, cursor: number, out: Out): void {
  for (let i = cursor; i < node.journal.length; i++) out.line(node.journalLine(i));
  if (node.journal.slice(cursor).some((e) => !e.fromManager && e.pid === node.unit.mainPid)) {
    out.line('@now-begin');
    out.line(node.stateText());
    out.line('@now-end');
  }
  out.line('.');
}
