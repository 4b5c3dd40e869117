import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

/**
 * A temp CA (`ca.pem`) and one server certificate (`public.crt`, `private.key`)
 * for the name `name` and 127.0.0.1, made with openssl in `dir`.
 */
export function makeTls(dir: string, name = 'kms-1'): void {
  const ssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-sha256'];
  ssl(['req', '-x509', ...ec, '-days', '2', '-subj', '/CN=test CA', '-keyout', 'ca.key', '-out', 'ca.pem',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  ssl(['req', ...ec, '-subj', `/CN=${name}`, '-keyout', 'private.key', '-out', 'node.csr']);
  writeFileSync(path.join(dir, 'node.ext'), `subjectAltName=DNS:${name},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n`);
  ssl(['x509', '-req', '-in', 'node.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', '7', '-days', '2',
    '-extfile', 'node.ext', '-out', 'public.crt']);
}

/** An HTTPS server on 127.0.0.1 with makeTls's certificate, counting its TLS connections and requests. */
export type CountingServer = {
  server: https.Server;
  port: number;
  connections: number;
  requests: number;
  /** The status /v1/health/ready answers (200 unless set). */
  status: number;
  close(): Promise<void>;
};

/** Starts a CountingServer with the certificate makeTls wrote to `dir`. */
export async function countingServer(dir: string): Promise<CountingServer> {
  const read = (f: string) => readFileSync(path.join(dir, f));
  const s: CountingServer = {
    server: https.createServer({ key: read('private.key'), cert: read('public.crt') }, (req, res) => {
      s.requests++;
      res.writeHead(req.url === '/v1/health/ready' ? s.status : 404, { 'content-type': 'application/json' });
      res.end(s.status === 200 ? '{}' : '{"message":"not ready: test"}');
    }),
    port: 0,
    connections: 0,
    requests: 0,
    status: 200,
    close: () => new Promise((resolve) => {
      s.server.closeAllConnections();
      s.server.close(() => resolve());
    }),
  };
  s.server.on('secureConnection', () => s.connections++);
  await new Promise<void>((resolve) => s.server.listen(0, '127.0.0.1', resolve));
  s.port = (s.server.address() as AddressInfo).port;
  return s;
}
