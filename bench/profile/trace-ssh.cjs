// Diagnostic preload for the bench (no change to rollout's code): timestamps
// every SSH handshake and every remote command rollout runs through ssh2, and
// the Vault HTTPS requests it makes, as JSON lines in $TRACE_SSH_FILE.
//
//   TRACE_SSH_FILE=/tmp/trace.jsonl node -r ./bench/profile/trace-ssh.cjs dist/cli/main.js apply INV --yes
//   node bench/profile/summarize-trace.mjs /tmp/trace.jsonl
//
// Each line: { kind: "connect"|"exec"|"https", node, start_ms, end_ms, cmd, verb, marks }
// (times in ms since the process started; verb, on exec: the agent's verb, as in
// `rollout-read`, when the command runs one; cmd is the command's first 120
// characters; marks, on exec: when each "@..." line rollout's scripts print
// arrived, and when a control word (go, ping, stop, ...) was written, as [ms, text]).
// Also every chunk on each SSH connection's socket, as the wire sees it
// (encrypted: only its time, direction and size), for
// bench/profile/round-trips.mjs: { kind: "wire", node, t, dir: "out"|"in", bytes }.
'use strict';
const { writeSync, openSync } = require('node:fs');
const { performance } = require('node:perf_hooks');
const file = process.env.TRACE_SSH_FILE;
if (file) {
  const fd = openSync(file, 'w');
  const t = () => Number(performance.now().toFixed(2));
  const emit = (o) => writeSync(fd, JSON.stringify(o) + '\n');
  emit({ kind: 'start', start_ms: 0, end_ms: t(), node: '', cmd: process.argv.slice(2).join(' ') });
  // Commands still open when rollout exits (it does not wait for the nodes to
  // close its channels) are written then, ending at the exit.
  const open = new Set();
  process.on('exit', () => {
    for (const finish of open) finish();
    emit({ kind: 'exit', start_ms: t(), end_ms: t(), node: '', cmd: '' });
  });

  const ssh2 = require('ssh2');
  const { Client } = ssh2;
  const origConnect = Client.prototype.connect;
  Client.prototype.connect = function (cfg) {
    const start = t();
    this.__traceNode = `${cfg.host}:${cfg.port}`;
    this.once('ready', () => emit({ kind: 'connect', node: this.__traceNode, start_ms: start, end_ms: t(), cmd: '' }));
    const ret = origConnect.call(this, cfg);
    // ssh2 keeps its socket in _sock; wrapped, not listened to, so its flow is unchanged.
    const sock = this._sock;
    const node = this.__traceNode;
    if (sock) {
      const sockWrite = sock.write;
      sock.write = function (chunk, ...rest) {
        emit({ kind: 'wire', node, t: t(), dir: 'out', bytes: chunk?.length ?? 0 });
        return sockWrite.call(this, chunk, ...rest);
      };
      const sockEmit = sock.emit;
      sock.emit = function (event, ...args) {
        if (event === 'data') emit({ kind: 'wire', node, t: t(), dir: 'in', bytes: args[0]?.length ?? 0 });
        return sockEmit.call(this, event, ...args);
      };
    }
    return ret;
  };
  const origExec = Client.prototype.exec;
  Client.prototype.exec = function (command, opts, cb) {
    if (typeof opts === 'function') {
      cb = opts;
      opts = {};
    }
    const start = t();
    const node = this.__traceNode;
    return origExec.call(this, command, opts, (err, channel) => {
      if (!err && channel) {
        let opened = t();
        const marks = [];
        // Seen as rollout reads it: a listener of our own would start the flow early.
        const emitEvent = channel.emit;
        channel.emit = function (event, ...args) {
          if (event === 'data') for (const line of String(args[0]).split('\n')) if (/^@[a-z-]+/.test(line)) marks.push([t(), line.match(/^@[a-z-]+/)[0]]);
          return emitEvent.call(this, event, ...args);
        };
        const write = channel.write;
        channel.write = function (chunk, ...rest) {
          const text = String(chunk);
          if (/^[a-z-]+\n$/.test(text)) marks.push([t(), `> ${text.trim()}`]);
          else if (/^(stage|release)\n/.test(text)) marks.push([t(), `> ${text.slice(0, text.indexOf('\n'))}`]);
          return write.call(this, chunk, ...rest);
        };
        const finish = () => {
          open.delete(finish);
          // The agent's verb (`sh -c 'SCRIPT' rollout-VERB ARGS`) names the command past the 120 characters kept.
          const verb = /' rollout-([a-z]+)(?: |$)/.exec(String(command))?.[1];
          emit({ kind: 'exec', node, start_ms: start, open_ms: opened, end_ms: t(), cmd: String(command).replace(/\s+/g, ' ').slice(0, 120), ...(verb ? { verb } : {}), ...(marks.length ? { marks } : {}) });
        };
        open.add(finish);
        channel.once('close', finish);
      }
      cb(err, channel);
    });
  };

  const https = require('node:https');
  const { syncBuiltinESMExports } = require('node:module');
  const origRequest = https.request;
  https.request = function (...args) {
    const start = t();
    const req = origRequest.apply(this, args);
    const u = args[0];
    const what = typeof u === 'string' ? u : u instanceof URL ? u.href : `${u?.method ?? 'GET'} ${u?.path ?? ''}`;
    req.once('response', (res) => res.once('end', () => emit({ kind: 'https', node: 'vault', start_ms: start, end_ms: t(), cmd: what })));
    return req;
  };
  syncBuiltinESMExports();
}
