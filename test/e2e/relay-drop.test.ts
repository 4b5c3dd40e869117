// A network that drops the link to a node mid-turn: kms-2 is reached through
// bench/relay.mjs (the bench's latency relay), whose SIGUSR1 resets every open
// connection at once. Whatever the moment, the run records what happened, the
// node is restarted at most once, and every file is whole.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BASE_PORT, LAB_DIR, NODES, REPO, clearKnob, configState, journal, resetLab, serviceState, setKnob, startRollout, writeInventory, type LabNode } from '../helpers/lab.js';

const RELAY_PORT = BASE_PORT + 52;
const KMS2_PORT = BASE_PORT + 2;

type Relay = { child: ChildProcess; cut(): Promise<number> };

/** The relay in front of kms-2's sshd (5 ms each way), once it listens. */
async function startRelay(): Promise<Relay> {
  const child = spawn(process.execPath, [path.join(REPO, 'bench/relay.mjs'), '--delay-ms', '5', '--map', `${RELAY_PORT}:${KMS2_PORT}`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => String((await lines.next()).value ?? '');
  expect(await next()).toMatch(/^relay: listening/);
  return {
    child,
    // Resolves with how many connections the relay reset.
    async cut() {
      child.kill('SIGUSR1');
      const line = await next();
      return Number(/^relay: cut (\d+) connection/.exec(line)?.[1] ?? -1);
    },
  };
}

/** The lab inventory with kms-2 behind the relay (its host key known under the relay's port too). */
function inventory(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'rollout-relay-'));
  const knownHosts = path.join(dir, 'known_hosts');
  const lab = readFileSync(path.join(LAB_DIR, 'known_hosts'), 'utf8');
  const kms2 = lab.split('\n').filter((l) => l.startsWith(`[127.0.0.1]:${KMS2_PORT} `)).map((l) => l.replace(`:${KMS2_PORT} `, `:${RELAY_PORT} `));
  expect(kms2.length).toBeGreaterThan(0);
  writeFileSync(knownHosts, `${lab.trimEnd()}\n${kms2.join('\n')}\n`);
  const file = writeInventory({ knownHosts });
  writeFileSync(file, readFileSync(file, 'utf8')
    .replace(`port: ${KMS2_PORT} }`, `port: ${RELAY_PORT} }`)
    .replace('ssh:\n', 'ssh:\n  keepaliveSeconds: 1\n  connectTimeoutSeconds: 3\n'));
  return file;
}

/** Each node's running minkms invocation now: what startsSince counts from. */
async function invocations(): Promise<Map<LabNode, string>> {
  return new Map(await Promise.all(NODES.map(async (n) => [n, (await serviceState(n)).InvocationID!] as const)));
}

/** The minkms invocations a node started since `before` (its invocations() entry): one per restart. */
async function startsSince(node: LabNode, before: Map<LabNode, string>): Promise<number> {
  const lines = await journal(node);
  const from = lines.findIndex((l) => l.invocation === before.get(node));
  expect(from).toBeGreaterThanOrEqual(0);
  return new Set(lines.slice(from).map((l) => l.invocation).filter((i) => i && i !== before.get(node))).size;
}

describe('a link dropped by the network mid-turn (relay reset)', () => {
  let relay: Relay | null = null;
  beforeEach(async () => {
    await resetLab();
    relay = await startRelay();
  });
  afterEach(() => {
    relay?.child.kill('SIGTERM');
    relay = null;
    for (const n of NODES) clearKnob(n, 'start-delay-ms');
  });

  /**
   * An apply with `slow`'s start held back 2.5 s, kms-2's link reset while
   * `slow` waits for its ready line; it must still end with exit 0 and every
   * node on the new file. Returns each node's invocation from before the run.
   */
  async function applyCutDuringGateOf(slow: LabNode): Promise<Map<LabNode, string>> {
    const inv = inventory();
    setKnob(slow, 'start-delay-ms', '2500');
    const since = await invocations();
    const run = startRollout(['apply', inv, '--yes']);
    await run.waitFor(new RegExp(`${slow}\\n(?:.*\\n)*?.*waiting for the ready line`));
    expect(await relay!.cut()).toBeGreaterThan(0);
    const r = await run.done;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(NODES.map(configState)).toEqual(['new', 'new', 'new']);
    return since;
  }

  it('during kms-2\'s gate: rollout reconnects, reads the journal again from its cursor, and never restarts kms-2 twice (exit 0)', async () => {
    const since = await applyCutDuringGateOf('kms-2');
    expect(await startsSince('kms-2', since)).toBe(1);
    expect((await serviceState('kms-2')).ActiveState).toBe('active');
  });

  it('while kms-2\'s turn channel waits ahead (during kms-1\'s gate): its turn takes a fresh channel, kms-2 is restarted once (exit 0)', async () => {
    const since = await applyCutDuringGateOf('kms-1');
    for (const n of NODES) expect(await startsSince(n, since)).toBe(1);
  });
});
