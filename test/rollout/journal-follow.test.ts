import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { parseJournalLine, readyHint, restartAndFollow } from '../../src/rollout/journal.js';
import { LocalTransport } from '../helpers/local-transport.js';

// The restart script runs here with the real sh or bash, timeout and coreutils;
// journalctl and systemctl are stand-ins on PATH that log each call.
// The stand-in journalctl answers the polls from numbered batch files: poll 1
// gets the manager's "Started" line, polls 2 and 3 nothing, poll 4 the ready line.
let dir: string;
const READY = '=> Server is up and running';
const entry = (message: string | number[], pid: string) => JSON.stringify({ __CURSOR: `c-${String(message)}`, __REALTIME_TIMESTAMP: '1', MESSAGE: message, _PID: pid, _SYSTEMD_INVOCATION_ID: 'new' });
// journalctl prints a message with colour codes as an array of bytes, as MinKMS's ready line.
const coloured = [...Buffer.from(`\u001b[1m\u001b[32m${READY}...\u001b[0m`)];
const isReady = (line: string) => parseJournalLine(line)?.message.includes(READY) === true;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rollout-follow-'));
  writeFileSync(path.join(dir, 'log'), '');
  writeFileSync(path.join(dir, 'poll.1'), `${entry('Started minkms.service', '1')}\n`);
  writeFileSync(path.join(dir, 'poll.4'), `${entry(coloured, '42')}\n`);
  const stand = (name: string, body: string) => {
    writeFileSync(path.join(dir, name), `#!/bin/sh\n${body}\n`);
    chmodSync(path.join(dir, name), 0o755);
  };
  stand('journalctl', `case " $* " in
  *" --show-cursor "*) echo '-- cursor: C0';;
  *) n=$(( $(grep -c poll ${dir}/log) + 1 )); echo poll >> ${dir}/log; [ ! -f ${dir}/poll.$n ] || cat ${dir}/poll.$n;;
esac`);
  stand('systemctl', `echo "systemctl $1" >> ${dir}/log
[ "$1" != show ] || printf 'ActiveState=active\\nSubState=running\\nNRestarts=0\\nInvocationID=new\\nMainPID=42\\n'`);
});

// Runs one restart channel: go once the cursor is taken, then every line up to the state after the ready line.
async function follow(env: NodeJS.ProcessEnv): Promise<{ lines: string[]; log: string[] }> {
  const t = new LocalTransport(env);
  const stream = restartAndFollow(t, 'minkms', 5, 30, [], READY);
  const lines: string[] = [];
  try {
    for await (const line of stream.lines) {
      lines.push(line);
      if (line.startsWith('@cursor ')) stream.send('go\n');
      if (line === '@now-end') break;
    }
  } finally {
    stream.close();
  }
  return { lines, log: readFileSync(path.join(dir, 'log'), 'utf8').trim().split('\n') };
}

function envWith(): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${dir}:${process.env.PATH}` };
}

describe('restartAndFollow on the node', () => {
  it.each([
    ['as bytes (colour codes)', coloured],
    ['as text', `${READY}...`],
  ])('asks systemd for the unit\'s state only after the batch that holds the ready line, %s', async (_form, message) => {
    writeFileSync(path.join(dir, 'poll.4'), `${entry(message, '42')}\n`);
    const { lines, log } = await follow(envWith());
    const started = lines.findIndex((l) => l.includes('Started minkms'));
    const ready = lines.findIndex(isReady);
    expect(started).toBeGreaterThan(lines.indexOf('@restarted 0'));
    expect(ready).toBeGreaterThan(started);
    // The batch before the ready line was followed by its heartbeat, not by a state.
    expect(lines.slice(started, ready)).not.toContain('@now-begin');
    expect(lines.slice(ready + 1)).toEqual(['@now-begin', 'ActiveState=active', 'SubState=running', 'NRestarts=0', 'InvocationID=new', 'MainPID=42', '@now-end']);
    // The state before the restart, the restart, and the state after the ready line: nothing else asks systemd.
    expect(log.filter((l) => l.startsWith('systemctl'))).toEqual(['systemctl show', 'systemctl restart', 'systemctl show']);
  });
});

describe('readyHint', () => {
  it('is the ready text when journalctl\'s JSON prints it as it is, else empty (every batch then gets its state)', () => {
    expect(readyHint('=> up')).toEqual({ text: '=> up', bytes: '61,62,32,117,112' });
    const none = { text: '', bytes: '' };
    expect(readyHint('say "ready"')).toEqual(none);
    expect(readyHint('C:\\ready')).toEqual(none);
    expect(readyHint('prêt')).toEqual(none);
    expect(readyHint('ready\tnow')).toEqual(none);
  });
});
