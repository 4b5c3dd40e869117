// A TCP relay for the bench's latency mode (BENCH_RTT): listens on 127.0.0.1
// ports and forwards each connection to a target port on 127.0.0.1, delaying
// every chunk by a fixed one-way delay in each direction, so a round trip
// through it costs 2 x delay, as between an operator and a distant fleet.
//
//   node bench/relay.mjs --delay-ms 25 --map 3401:2401 --map 3402:2402 ...
//   node bench/relay.mjs --delay-ms 25 --base 3400:2400 --count 10    (3401->2401 .. 3410->2410)
//
// Prints "relay: listening ..." on stdout once every port listens; stops on
// SIGTERM or SIGINT (every connection cut). SIGUSR1 cuts every open
// connection with a TCP reset, as a network that drops a link mid-session,
// prints "relay: cut N connection(s)" and keeps listening (the tests' fault).
//
// It delays the chunks Node reads, not packets: a user-space relay never sees
// packets, and `tc netem` on loopback would slow every loopback user on the
// machine (the default lab, the test suite, Vault) and need the lab's network
// changed. What the bench needs is latency, and a constant delay per chunk
// with chunks kept in order gives every request/reply exchange exactly one
// RTT; bandwidth, loss and TCP's own windowing are not modelled.
import net from 'node:net';

const args = process.argv.slice(2);
let delayMs = null;
const maps = [];
for (let i = 0; i < args.length; i++) {
  const [flag, value] = [args[i], args[i + 1]];
  if (flag === '--delay-ms') delayMs = Number(value);
  else if (flag === '--map') maps.push(value.split(':').map(Number));
  else if (flag === '--base') {
    const count = Number(args[args.indexOf('--count') + 1]);
    const [from, to] = value.split(':').map(Number);
    for (let k = 1; k <= count; k++) maps.push([from + k, to + k]);
  } else if (flag === '--count') {
    // read with --base
  } else {
    console.error(`relay: unknown argument ${flag}`);
    process.exit(2);
  }
  i++;
}
const port = (p) => Number.isInteger(p) && p > 0 && p < 65536;
if (!(delayMs >= 0) || maps.length === 0 || !maps.every(([a, b]) => port(a) && port(b))) {
  console.error('usage: node bench/relay.mjs --delay-ms MS (--map LISTEN:TARGET ... | --base LISTEN0:TARGET0 --count N)');
  process.exit(2);
}

const sockets = new Set();
// Each open connection's reset (both legs), for SIGUSR1.
const links = new Set();
const track = (s) => {
  sockets.add(s);
  s.once('close', () => sockets.delete(s));
  return s;
};

// Forwards from -> to, each chunk (and the end of the stream) delivered
// delayMs after it was read, in order. `to` is written only once ready() says
// so (the upstream connection is opened late, see below).
function delayed(from, to, ready) {
  const queue = []; // [dueAt, chunk | null for the end]
  let timer = null;
  const pump = () => {
    timer = null;
    if (!ready()) return;
    while (queue.length > 0 && queue[0][0] <= performance.now()) {
      const [, chunk] = queue.shift();
      if (chunk === null) to.end();
      else if (!to.write(chunk)) {
        // Backpressure: stop reading until the other side drains.
        from.pause();
        to.once('drain', () => from.resume());
      }
    }
    if (queue.length > 0) timer = setTimeout(pump, Math.max(0, queue[0][0] - performance.now()));
  };
  const push = (chunk) => {
    queue.push([performance.now() + delayMs, chunk]);
    if (timer === null) timer = setTimeout(pump, delayMs);
  };
  from.on('data', push);
  from.once('end', () => push(null));
  return { pump, stop: () => clearTimeout(timer) };
}

const servers = maps.map(([listenPort, targetPort]) => {
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    track(client).setNoDelay(true);
    const upstream = track(new net.Socket({ allowHalfOpen: true }));
    let connected = false;
    const up = delayed(client, upstream, () => connected);
    const down = delayed(upstream, client, () => true);
    const cut = () => {
      up.stop();
      down.stop();
      client.destroy();
      upstream.destroy();
    };
    // A clean close is a FIN, which travels through the queue like data.
    client.once('error', cut);
    upstream.once('error', cut);
    let dropped = false;
    const reset = () => {
      dropped = true;
      up.stop();
      down.stop();
      client.resetAndDestroy();
      if (connected) upstream.resetAndDestroy();
      else upstream.destroy();
    };
    links.add(reset);
    client.once('close', () => links.delete(reset));
    // A real TCP connect costs a round trip before the client may send, and
    // the server only accepts (and sends its banner) when the client's ACK
    // arrives: 1.5 RTT after the SYN. The local connect to the relay is
    // instant, so the relay opens the upstream connection 3 x delay later.
    setTimeout(() => {
      if (dropped) return;
      upstream.connect(targetPort, '127.0.0.1', () => {
        upstream.setNoDelay(true);
        connected = true;
        up.pump();
      });
    }, 3 * delayMs);
  });
  server.listen(listenPort, '127.0.0.1');
  return new Promise((resolve, reject) => {
    server.once('listening', () => resolve(server));
    server.once('error', reject);
  });
});

try {
  await Promise.all(servers);
} catch (err) {
  console.error(`relay: ${err.message}`);
  process.exit(1);
}
console.log(`relay: listening on ${maps.length} port(s), one-way delay ${delayMs} ms (RTT ${2 * delayMs} ms)`);

const stop = async () => {
  for (const s of sockets) s.destroy();
  for (const server of await Promise.all(servers)) server.close();
  process.exit(0);
};
process.on('SIGUSR1', () => {
  const open = [...links];
  for (const reset of open) reset();
  console.log(`relay: cut ${open.length} connection(s)`);
});
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
