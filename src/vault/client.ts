import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { rootCertificates } from 'node:tls';
import { VaultUnreachableError } from '../errors.js';

/** Where rollout's own Vault checks go, and whom they trust. */
export type VaultEndpoint = {
  server: string;
  /** Extra CA certificates (PEM) trusted besides Node's bundled roots. */
  ca?: Buffer;
  timeoutMs: number;
};

/** A Vault HTTP answer: status, parsed JSON body (or null), and the `errors` list if any. */
export type VaultResponse = { status: number; body: Record<string, unknown> | null; errors: string[] };

/**
 * One Vault API call (`/v1/...`), JSON in and out. Resolves on any HTTP status;
 * throws VaultUnreachableError only when no HTTP answer came back. The token and
 * body go in headers and the request body, never in a URL.
 */
export function vaultCall(
  endpoint: VaultEndpoint,
  method: 'GET' | 'POST',
  path: string,
  opts: { token?: string; namespace?: string; body?: unknown } = {},
): Promise<VaultResponse> {
  const url = new URL(`/v1/${path.replace(/^\/+/, '')}`, endpoint.server);
  const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
  const headers: Record<string, string> = { accept: 'application/json' };
  if (payload) headers['content-type'] = 'application/json';
  if (opts.token) headers['x-vault-token'] = opts.token;
  if (opts.namespace) headers['x-vault-namespace'] = opts.namespace;
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      { method, headers, timeout: endpoint.timeoutMs, ...(endpoint.ca && url.protocol === 'https:' ? { ca: withDefaultRoots(endpoint.ca) } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: Record<string, unknown> | null = null;
          try {
            body = text ? (JSON.parse(text) as Record<string, unknown>) : null;
          } catch {
            body = null;
          }
          const errors = Array.isArray(body?.errors) ? (body.errors as unknown[]).map(String) : [];
          resolve({ status: res.statusCode ?? 0, body, errors });
        });
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => reject(new VaultUnreachableError(err.code ?? 'ERROR', describeNetworkError(err, url))));
    req.end(payload);
  });
}

function describeNetworkError(err: NodeJS.ErrnoException, url: URL): string {
  const where = `${url.hostname}:${url.port || (url.protocol === 'https:' ? 443 : 80)}`;
  switch (err.code) {
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `host name ${url.hostname} does not resolve`;
    case 'ECONNREFUSED':
      return `connection to ${where} refused`;
    case 'ETIMEDOUT':
      return `no answer from ${where} (timed out)`;
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
      return `TLS certificate of ${where} is not trusted (${err.code}); set preflight.vaultCaFile in the inventory to the CA that signed it`;
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `TLS certificate of ${where} does not name ${url.hostname}`;
    default:
      return `cannot reach ${where}: ${err.code ?? err.message}`;
  }
}

// Node replaces its bundled roots when `ca` is given; keep them so a public CA still works.
function withDefaultRoots(extra: Buffer): Array<string | Buffer> {
  return [...rootCertificates, extra];
}
