import { readFile } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import ssh2, { type ClientChannel, type ConnectConfig } from 'ssh2';
import { askSecret } from '../util/ask-secret.js';
import { ConnectionLostError, ForwardingRefusedError, HostKeyError, NodeError } from '../errors.js';
import { shellQuote } from '../util/shell-quote.js';
import { appendKnownHost, checkHostKey, fingerprint, hostKeyAlgorithms, knownHostsName, knownKeyTypes, parseKnownHosts, type KnownHostEntry } from './known-hosts.js';
import type { ExecResult, LineStream, Transport } from './transport.js';
import { LineQueue } from '../util/line-queue.js';

// ssh2 is CommonJS: its named exports are only reachable through the default one.
const { Client, utils } = ssh2;
type Client = InstanceType<typeof Client>;

/** Where and how to reach one node over SSH, resolved from the inventory (whose NodeTarget is one). */
export type SshTarget = {
  name: string;
  host: string;
  port: number;
  user: string;
  identityFile?: string;
  knownHosts: string;
  connectTimeoutMs: number;
  keepaliveMs: number;
  /** The jump host (ProxyJump) the connection goes through, fully resolved. */
  jump?: JumpTarget;
  /** --accept-new-host-keys: record a host key seen for the first time (never a changed one). */
  acceptNewHostKeys?: boolean;
  /** sudo's password for a non-root login; without it, asked on the terminal if sudo wants one. */
  sudoPassword?: string;
};

/** A jump host as rollout reaches it (its host key checked against the same known_hosts). */
export type JumpTarget = { spec: string; host: string; port: number; user: string; identityFile?: string };

/**
 * What the SSH connections of one run share, passed explicitly so that two runs
 * in one process never see each other's answers, secrets or recorded keys.
 */
export type SshContext = {
  /** known_hosts files, parsed once per run whatever the number of nodes sharing them. */
  readonly knownHosts: Map<string, Promise<KnownHostEntry[]>>;
  /** One sudo question per login user (the same user usually has one password). */
  readonly sudoAnswers: Map<string, Promise<string | null>>;
  /** One passphrase question per key file. */
  readonly passphrases: Map<string, Promise<string | Error | null>>;
  /** sudo passwords given or typed in this run: the session adds them to its redactor. */
  readonly sudoPasswords: string[];
  /** Host keys recorded by --accept-new-host-keys in this run, as lines to show the operator. */
  readonly recordedHostKeys: string[];
  /** Asks the operator for a secret (never echoed); null when there is no terminal. */
  readonly ask: (prompt: string) => Promise<string | null>;
};

/** A fresh context for one run; `ask` defaults to the terminal. */
export function createSshContext(ask: (prompt: string) => Promise<string | null> = askSecret): SshContext {
  return { knownHosts: new Map(), sudoAnswers: new Map(), passphrases: new Map(), sudoPasswords: [], recordedHostKeys: [], ask };
}

function loadKnownHosts(ctx: SshContext, file: string): Promise<KnownHostEntry[]> {
  let entries = ctx.knownHosts.get(file);
  if (!entries) {
    entries = readFile(file, 'utf8').then(parseKnownHosts, () => []);
    ctx.knownHosts.set(file, entries);
  }
  return entries;
}

/**
 * Opens one authenticated SSH connection to a node, verifying its host key
 * against known_hosts (unknown or changed keys are refused, never accepted).
 * All later steps of the run share this connection as channels.
 */
export async function connectSsh(node: SshTarget, ctx: SshContext): Promise<Transport> {
  const client = await openClient(node, ctx);
  const t = new SshTransport(node, client, () => openClient(node, ctx));
  if (node.user !== 'root') {
    try {
      await t.prepareSudo(node, ctx);
    } catch (err) {
      t.close(); // the caller never gets this connection: it must not keep the process alive
      throw err;
    }
  }
  return t;
}

function sudoPasswordFor(node: SshTarget, ctx: SshContext): Promise<string | null> {
  if (node.sudoPassword !== undefined) return Promise.resolve(node.sudoPassword);
  let p = ctx.sudoAnswers.get(node.user);
  if (!p) {
    p = ctx.ask(`sudo password for ${node.user} on the nodes: `);
    ctx.sudoAnswers.set(node.user, p);
  }
  return p;
}

// null without a terminal; an Error when the passphrase does not open the key.
function keyPassphrase(ctx: SshContext, file: string, key: Buffer): Promise<string | Error | null> {
  let p = ctx.passphrases.get(file);
  if (!p) {
    p = ctx.ask(`Passphrase for ${file}: `).then((answer) => {
      if (answer === null) return null;
      return utils.parseKey(key, answer) instanceof Error ? new Error('the passphrase does not open it') : answer;
    });
    ctx.passphrases.set(file, p);
  }
  return p;
}

// Through a jump host: its own connection (host key checked too), then a
// direct-tcpip channel to the node that the node's connection runs over.
async function openClient(node: SshTarget, ctx: SshContext): Promise<Client> {
  if (!node.jump) return openDirect(node, ctx);
  const { jump: j, identityFile: _ownKey, ...settings } = node;
  const jumpNode: SshTarget = { ...settings, name: `${node.name} (jump host ${j.spec})`, host: j.host, port: j.port, user: j.user, ...(j.identityFile ? { identityFile: j.identityFile } : {}) };
  const jumpClient = await openDirect(jumpNode, ctx);
  let sock: ClientChannel;
  try {
    sock = await new Promise<ClientChannel>((resolve, reject) => {
      jumpClient.forwardOut('127.0.0.1', 0, node.host, node.port, (err, ch) => (err ? reject(err) : resolve(ch)));
    });
  } catch (err) {
    jumpClient.end();
    throw new NodeError(node.name, `the jump host ${j.spec} could not open a connection to ${node.host}:${node.port} (${(err as Error).message})`);
  }
  try {
    const client = await openDirect(node, ctx, sock);
    client.on('close', () => jumpClient.end());
    return client;
  } catch (err) {
    jumpClient.end();
    throw err;
  }
}

async function openDirect(node: SshTarget, ctx: SshContext, sock?: ClientChannel): Promise<Client> {
  const entries = await loadKnownHosts(ctx, node.knownHosts);
  const where = `${node.host}:${node.port}${node.jump ? ` via ${node.jump.spec}` : ''}`;
  let hostKeyProblem: HostKeyError | null = null;
  const config: ConnectConfig = {
    ...(sock ? { sock } : { host: node.host, port: node.port }),
    username: node.user,
    readyTimeout: node.connectTimeoutMs,
    // A silent peer (a cut link, a frozen sshd) is declared lost after three missed keepalives.
    keepaliveInterval: node.keepaliveMs,
    keepaliveCountMax: 3,
    hostVerifier: (key: Buffer) => {
      const parsed = utils.parseKey(key);
      const type = parsed instanceof Error ? 'unknown' : parsed.type;
      const verdict = checkHostKey(entries, node.host, node.port, type, key.toString('base64'));
      if (verdict.status === 'match') return true;
      const name = knownHostsName(node.host, node.port);
      const fp = fingerprint(key);
      if (verdict.status === 'unknown' && node.acceptNewHostKeys) {
        // Recorded on purpose, said out loud; a changed key is never accepted this way.
        appendKnownHost(node.knownHosts, `${name} ${type} ${key.toString('base64')}`);
        entries.push(...parseKnownHosts(`${name} ${type} ${key.toString('base64')}\n`));
        ctx.recordedHostKeys.push(`${node.name}: recorded the new host key of ${name} (${type} ${fp}) in ${node.knownHosts} (--accept-new-host-keys)`);
        return true;
      }
      hostKeyProblem = new HostKeyError(
        node.name,
        verdict.status === 'unknown'
          ? `host key of ${name} is not in ${node.knownHosts} (server offers ${type} ${fp}); verify that fingerprint out of band, then add the key (for example \`ssh-keyscan -p ${node.port} ${node.host} >> ${node.knownHosts}\`)`
          : verdict.status === 'revoked'
            ? `host key of ${name} (${fp}) is marked @revoked in ${node.knownHosts}; refusing to connect`
            : `HOST KEY CHANGED for ${name}: the server offers ${type} ${fp}, which differs from the key recorded in ${node.knownHosts}. This can mean an attack or a reinstalled node; refusing to connect until you check it and update known_hosts`,
      );
      return false;
    },
  };
  const types = knownKeyTypes(entries, node.host, node.port);
  // Ask for a key type we have on record, as OpenSSH does, so a second key type is not "unknown".
  if (types.length > 0) config.algorithms = { serverHostKey: hostKeyAlgorithms(types) as never };
  if (node.identityFile) {
    try {
      config.privateKey = await readFile(node.identityFile);
    } catch (err) {
      throw new NodeError(node.name, `cannot read identity file ${node.identityFile} (${(err as NodeJS.ErrnoException).code}); check ssh.identityFile in the inventory`);
    }
    const parsed = utils.parseKey(config.privateKey);
    if (parsed instanceof Error) {
      if (!/passphrase/i.test(parsed.message)) throw new NodeError(node.name, `identity file ${node.identityFile} is not a private key rollout can read: ${parsed.message}`);
      const passphrase = await keyPassphrase(ctx, node.identityFile, config.privateKey);
      if (passphrase === null) {
        throw new NodeError(node.name, `identity file ${node.identityFile} is passphrase-protected and there is no terminal to ask for the passphrase; add it to ssh-agent (ssh-add) and leave identityFile out of the inventory`);
      }
      if (passphrase instanceof Error) throw new NodeError(node.name, `identity file ${node.identityFile}: ${passphrase.message}`);
      config.passphrase = passphrase;
    }
  }
  if (process.env.SSH_AUTH_SOCK) config.agent = process.env.SSH_AUTH_SOCK;
  // Only the methods we hold, in ssh2's own order: its default first asks `none` for the
  // server's list, one round trip more per connection (50 ms on a fleet 50 ms away).
  const methods = [...(config.privateKey ? ['publickey' as const] : []), ...(config.agent ? ['agent' as const] : [])];
  if (methods.length > 0) config.authHandler = methods;

  const client = new Client();
  // A failed handshake can emit several errors (timeout, then close): only the first counts.
  client.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    client.once('ready', () => resolve());
    client.once('error', (err: Error & { level?: string; code?: string }) => {
      client.destroy();
      if (hostKeyProblem) return reject(hostKeyProblem);
      if (err.level === 'client-authentication') {
        return reject(new NodeError(node.name, `authentication as ${node.user} on ${where} failed (tried ${node.identityFile ?? 'no identity file'}${config.agent ? ' and ssh-agent' : ''}); check ssh.user and ssh.identityFile`));
      }
      if (err.level === 'client-timeout') return reject(new NodeError(node.name, `no SSH handshake with ${where} within ${node.connectTimeoutMs / 1000} s; check the host, port and firewall`));
      reject(new NodeError(node.name, `cannot connect to ${where}: ${err.code ?? err.message}`));
    });
    client.connect(config);
    // SSH packets are whole messages: Nagle would only hold each small one for the peer's delayed ACK.
    client.setNoDelay(true);
  });
  return client;
}

class SshTransport implements Transport {
  readonly name: string;
  #client: Client;
  readonly #reconnect: () => Promise<Client>;
  readonly #sudo: boolean;
  /** Set when sudo needs a password: every command then reads it from its stdin's first line. */
  #sudoPassword: string | null = null;
  #lost: Error | null = null;
  #closed = false;

  constructor(node: SshTarget, client: Client, reconnect: () => Promise<Client>) {
    this.name = node.name;
    this.#client = client;
    this.#reconnect = reconnect;
    this.#sudo = node.user !== 'root';
    this.#watch(client);
  }

  #watch(client: Client): void {
    client.on('error', (err) => {
      if (client === this.#client) this.#lost = err;
    });
    client.on('close', () => {
      if (client === this.#client) this.#lost ??= new Error('connection closed');
    });
  }

  // After a lost connection the next command reconnects (a few tries with
  // backoff). Callers decide whether the command that was cut may be repeated.
  async #connected(): Promise<Client> {
    if (!this.#lost) return this.#client;
    if (this.#closed) throw new ConnectionLostError(this.name, 'the connection was closed', false);
    let last: unknown = this.#lost;
    for (const delay of [0, 500, 1500]) {
      if (delay) await new Promise((r) => setTimeout(r, delay));
      try {
        const client = await this.#reconnect();
        this.#client = client;
        this.#lost = null;
        this.#watch(client);
        return client;
      } catch (err) {
        last = err;
      }
    }
    throw new ConnectionLostError(this.name, `unreachable: the SSH connection was lost and reconnecting failed (${last instanceof Error ? last.message.replace(`${this.name}: `, '') : String(last)})`, false);
  }

  // Non-root logins run every command through sudo; a password goes on stdin's first
  // line (-S), never on a command line. -k: a timestamp cached by another session
  // would skip the password read and hand that line to the command.
  #wrap(command: string): string {
    if (!this.#sudo) return command;
    return this.#sudoPassword !== null ? `sudo -k -S -p '' -- sh -c ${shellQuote(command)}` : `sudo -k -n -- sh -c ${shellQuote(command)}`;
  }

  /**
   * For a non-root login: if sudo wants a password, takes it (the inventory's, else
   * asked once per run) and proves it works; records it in `ctx` for the redactor.
   */
  async prepareSudo(node: SshTarget, ctx: SshContext): Promise<void> {
    const probe = await this.exec('true');
    if (probe.code === 0 || !/password is required/i.test(probe.stderr)) return;
    const password = await sudoPasswordFor(node, ctx);
    if (password === null) {
      throw new NodeError(this.name, `sudo on ${node.host} asks ${node.user} for a password and there is no terminal to ask on; set ssh.sudoPassword (for example { env: ROLLOUT_SUDO_PASSWORD }) or give ${node.user} passwordless sudo`);
    }
    this.#sudoPassword = password;
    if (!ctx.sudoPasswords.includes(password)) ctx.sudoPasswords.push(password);
    const check = await this.exec('true');
    if (check.code !== 0) {
      this.#sudoPassword = null;
      throw new NodeError(this.name, `sudo on ${node.host} refused the password for ${node.user} (${check.stderr.trim().split('\n').pop() ?? `exit ${check.code}`})`);
    }
  }

  #stdin(data?: Buffer): Buffer | undefined {
    if (this.#sudoPassword === null) return data;
    return Buffer.concat([Buffer.from(`${this.#sudoPassword}\n`), data ?? Buffer.alloc(0)]);
  }

  // Opening a channel runs nothing yet, so a failed open is safe to retry once
  // on a fresh connection, whatever the command.
  async #open(command: string): Promise<ClientChannel> {
    for (let attempt = 0; ; attempt++) {
      const client = await this.#connected();
      try {
        return await new Promise<ClientChannel>((resolve, reject) => {
          client.exec(this.#wrap(command), (err, channel) => (err ? reject(err) : resolve(channel)));
        });
      } catch (err) {
        if (client === this.#client) this.#lost = err as Error;
        if (attempt >= 1) throw new ConnectionLostError(this.name, `unreachable: no SSH channel could be opened (${(err as Error).message})`, false);
      }
    }
  }

  async exec(command: string, opts: { stdin?: Buffer; timeoutMs?: number; onStdout?: (chunk: Buffer) => void } = {}): Promise<ExecResult> {
    const channel = await this.#open(command);
    return new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      const timer = opts.timeoutMs
        ? setTimeout(() => {
            channel.close();
            reject(new NodeError(this.name, `remote command did not finish within ${opts.timeoutMs! / 1000} s`));
          }, opts.timeoutMs)
        : null;
      channel.on('data', (d: Buffer) => {
        out.push(d);
        opts.onStdout?.(d);
      });
      channel.stderr.on('data', (d: Buffer) => err.push(d));
      channel.on('close', (code: number | null | undefined) => {
        if (timer) clearTimeout(timer);
        // No exit status: the connection went away under the command.
        if (code === undefined || code === null && this.#lost) {
          reject(new ConnectionLostError(this.name, `SSH connection lost while a command ran${this.#lost ? `: ${this.#lost.message}` : ''}`, true));
          return;
        }
        resolve({ code: code ?? null, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') });
      });
      channel.end(this.#stdin(opts.stdin) ?? undefined);
    });
  }

  stream(command: string, opts: { input?: boolean } = {}): LineStream {
    const queue = new LineQueue();
    let channel: ClientChannel | null = null;
    let closeRequested = false;
    let failure: Error | null = null;
    const pending: string[] = [];
    const finish = () => queue.end();
    this.#open(command).then(
      (ch) => {
        channel = ch;
        if (closeRequested) ch.close();
        ch.on('data', (d: Buffer) => queue.push(d));
        ch.stderr.resume();
        ch.on('close', finish);
        const password = this.#stdin();
        if (password) ch.write(password);
        if (opts.input) {
          for (const text of pending.splice(0)) ch.write(text);
        } else {
          ch.end();
        }
      },
      (err: Error) => {
        failure = err;
        finish();
      },
    );
    return {
      lines: queue.lines,
      started: () => channel !== null,
      failure: () => failure,
      send: (text: string) => {
        if (!opts.input || queue.ended || closeRequested) return false;
        if (channel) channel.write(text);
        else pending.push(text);
        return true;
      },
      close: () => {
        closeRequested = true;
        if (channel) {
          // OpenSSH delivers the signal to the remote command; closing covers servers that do not.
          channel.signal('TERM');
          channel.close();
        }
        finish();
      },
    };
  }

  async connect(host: string, port: number): Promise<Duplex> {
    const client = await this.#connected();
    return new Promise<Duplex>((resolve, reject) => {
      client.forwardOut('127.0.0.1', 0, host, port, (err, channel) => {
        // SSH_OPEN_ADMINISTRATIVELY_PROHIBITED (RFC 4254): the server's policy, not a passing failure.
        const Failure = (err as Error & { reason?: number } | undefined)?.reason === 1 ? ForwardingRefusedError : NodeError;
        if (err) reject(new Failure(this.name, `the node did not open a connection to ${host}:${port} (${err.message})`));
        else resolve(channel);
      });
    });
  }

  close(): void {
    this.#closed = true;
    this.#client.end();
  }
}
