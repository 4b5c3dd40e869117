// Before each restart every other node's /v1/health/ready is asked. Asked by a
// command, each answer costs the node a shell, a curl and a TLS handshake; over
// a connection kept open from one turn to the next it costs one HTTP request.
import http from 'node:http';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { ForwardingRefusedError, NodeError } from '../errors.js';
import type { Transport } from '../transport/transport.js';
import { shellQuote } from '../util/shell-quote.js';
import type { ApiTarget } from './service-probe.js';

/** A ready node answers in milliseconds; a slower answer is left to the command (which allows 5 s). */
const QUESTION_TIMEOUT_MS = 2_000;

/** Pure. HOST:PORT (the node's --host; `[v6]:port` too) as its parts; null when it is not one. */
export function splitHostPort(hostPort: string): { host: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(hostPort);
  const port = Number(m?.[3]);
  if (!m || !(port > 0 && port < 65536)) return null;
  return { host: (m[1] ?? m[2])!, port };
}

/** Pure. The PEM certificates in `text` (a CA file, or a CA directory's files one after another). */
export function pemCertificates(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/**
 * One node's own KMS API over a TLS connection that the node's sshd opens
 * (Transport.connect) to its --host, checked against the CA its config names
 * (read from the node once), kept open between questions (HTTP keep-alive).
 * It only ever says "ready" (a 200): anything else, and a node whose answer
 * it cannot get this way, is for the caller to ask by command (ready.sh),
 * whose answer stands.
 */
export class KeptApi {
  readonly #t: Transport;
  readonly #agent: http.Agent;
  #target: ApiTarget | null = null;
  #ca: Promise<string[]> | null = null;
  /** The kept path cannot be had on this node (see #open): this run asks it by command. */
  #off: boolean;
  #opening = false;

  constructor(t: Transport) {
    this.#t = t;
    this.#off = t.connect === undefined;
    this.#agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    // The agent's sockets are TLS over the node's own connection, opened when it needs one.
    (this.#agent as unknown as { createConnection: unknown }).createConnection = (_opts: unknown, done: (err: Error | null, s?: Duplex) => void) => {
      this.#open().then((s) => done(null, s), (err: Error) => done(err));
      return undefined;
    };
  }

  /** Whether a question now goes over an open, idle connection (one round trip) for `target`. */
  warm(target: ApiTarget): boolean {
    if (this.#off || !this.#same(target)) return false;
    return Object.values(this.#agent.freeSockets).some((list) => (list?.length ?? 0) > 0);
  }

  /**
   * GET /v1/health/ready over the kept connection (opened first when there is
   * none): true on 200, false on anything else, never a throw.
   */
  async ready(target: ApiTarget): Promise<boolean> {
    const where = splitHostPort(target.host);
    if (this.#off || !(target.insecure || target.ca) || !where) return false;
    if (!this.#same(target)) {
      this.#agent.destroy();
      this.#target = target;
      this.#ca = null;
    }
    return new Promise<boolean>((resolve) => {
      const req = http.request({ agent: this.#agent, host: where.host, port: where.port, path: '/v1/health/ready', method: 'GET', headers: { 'User-Agent': 'rollout' }, timeout: QUESTION_TIMEOUT_MS }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode === 200));
        res.on('error', () => resolve(false));
      });
      req.on('timeout', () => req.destroy(new Error('no answer in time')));
      req.on('error', () => resolve(false));
      req.end();
    });
  }

  /** Opens the kept connection in the background when none is open or opening (its answer is not used). */
  warmUp(target: ApiTarget): void {
    if (this.#off || this.#opening || this.warm(target)) return;
    void this.ready(target);
  }

  close(): void {
    this.#off = true;
    this.#agent.destroy();
  }

  #same(target: ApiTarget): boolean {
    const t = this.#target;
    return t !== null && t.host === target.host && t.ca === target.ca && t.insecure === target.insecure;
  }

  async #open(): Promise<Duplex> {
    const target = this.#target!;
    const where = splitHostPort(target.host)!;
    this.#opening = true;
    try {
      const ca = target.insecure ? [] : await (this.#ca ??= this.#readCa(target.ca!));
      const channel = await this.#t.connect!(where.host, where.port);
      const socket = tls.connect({
        socket: channel,
        // SNI is a name, never an address; the certificate is checked against the --host either way.
        ...(isIP(where.host) ? {} : { servername: where.host }),
        ...(target.insecure ? { rejectUnauthorized: false } : { ca, checkServerIdentity: (_name: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(where.host, cert) }),
      });
      await new Promise<void>((resolve, reject) => {
        socket.once('secureConnect', () => resolve());
        socket.once('error', reject);
      });
      // An idle socket's error (a lost link) only ends it; the agent then drops it.
      socket.on('error', () => socket.destroy());
      // The KMS side closed (a restart). An SSH channel is half-open after the far end's EOF,
      // and a kept socket that looks open would take the next question into the void.
      socket.once('end', () => socket.destroy());
      return socket;
    } catch (err) {
      // Refused forwarding, a CA or certificate rollout cannot use: for the whole run.
      // Nothing listening yet (a node just restarted) or a lost link: tried again later.
      if (!(err instanceof NodeError) || err instanceof ForwardingRefusedError) this.#off = true;
      throw err;
    } finally {
      this.#opening = false;
    }
  }

  // The CA the node's config names (a file, or a directory of them): public certificates.
  async #readCa(path: string): Promise<string[]> {
    const r = await this.#t.exec(`if [ -d ${shellQuote(path)} ]; then cat -- ${shellQuote(path)}/*; else cat -- ${shellQuote(path)}; fi`, { timeoutMs: 30_000 });
    const certs = pemCertificates(r.stdout.toString('utf8'));
    if (certs.length === 0) throw new Error(`no certificate in ${path}`);
    return certs;
  }
}
