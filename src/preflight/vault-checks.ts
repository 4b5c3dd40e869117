import { randomBytes } from 'node:crypto';
import type { VaultSection } from '../inventory/secrets.js';
import { VaultUnreachableError } from '../errors.js';
import { vaultCall, type VaultEndpoint, type VaultResponse } from '../vault/client.js';
import type { Check } from './check.js';

/** Options of the checks from this machine. */
export type VaultCheckOptions = {
  endpoint: VaultEndpoint;
  /** Skip the login and every check that needs its token (limited-use SecretIDs). */
  skipLogin: boolean;
  /** The Kubernetes JWT when the section names a file on the nodes (read from one of them). */
  jwtFromNode?: string;
  /** The sys/health answer when it was asked earlier (it spends nothing; see startVaultHealth). */
  health?: Promise<VaultResponse>;
};

const fail = (name: string, detail: string): Check => ({ scope: 'vault', name, status: 'fail', detail });
const pass = (name: string, detail: string): Check => ({ scope: 'vault', name, status: 'pass', detail });
const skip = (name: string, detail: string): Check => ({ scope: 'vault', name, status: 'skip', detail });
const warn = (name: string, detail: string): Check => ({ scope: 'vault', name, status: 'warn', detail });

/** Vault's own words for a failed call, for a check's detail. */
function why(r: VaultResponse): string {
  return `HTTP ${r.status}${r.errors.length ? `: ${r.errors.join('; ')}` : ''}`;
}

/**
 * Proves from this machine that the Vault HSM section will work before any node
 * restarts: Vault reachable and unsealed, a login exactly as the KMS does it, the
 * token's capabilities, an HMAC and an encrypt/decrypt round trip on random bytes
 * with the transit key (changes nothing in Vault), and the token revoked after.
 */
export async function runVaultChecks(v: VaultSection, opts: VaultCheckOptions): Promise<Check[]> {
  const checks: Check[] = [];
  const call = (method: 'GET' | 'POST', path: string, o: { token?: string; namespace?: string; body?: unknown } = {}) =>
    vaultCall(opts.endpoint, method, path, o);

  // 1. Reachable, initialised, unsealed (a standby answers too).
  try {
    const r = await (opts.health ?? call('GET', 'sys/health'));
    const b = r.body ?? {};
    if (r.status === 503 || b.sealed === true) checks.push(fail('health', `Vault at ${v.server} is sealed (HTTP ${r.status}); unseal it before the rollout`));
    else if (r.status === 501 || b.initialized === false) checks.push(fail('health', `Vault at ${v.server} is not initialised (HTTP ${r.status})`));
    else if ([200, 429, 472, 473].includes(r.status)) {
      checks.push(pass('health', `${v.server} is initialised and unsealed (${r.status === 200 ? 'active' : 'standby'}${b.version ? `, version ${String(b.version)}` : ''})`));
    } else checks.push(fail('health', `unexpected answer from ${v.server}/v1/sys/health: ${why(r)}`));
  } catch (err) {
    if (!(err instanceof VaultUnreachableError)) throw err;
    checks.push(fail('health', `Vault at ${v.server} is unreachable from this machine: ${err.message} (if only this machine cannot reach it, --skip-vault-checks)`));
  }
  if (checks.some((c) => c.status === 'fail')) return [...checks, skip('login', 'not tried: Vault is not usable')];

  if (opts.skipLogin) {
    return [...checks, skip('login', '--skip-vault-login: login, capabilities and transit checks not run; the first node\'s gate will be the proof')];
  }

  // 2. Log in exactly as the KMS will.
  const auth = v.approle
    ? { kind: 'AppRole', mount: v.approle.path ?? 'approle', namespace: v.approle.namespace, body: { role_id: v.approle.id, secret_id: v.approle.secret }, who: `role ID ${v.approle.id}` }
    : { kind: 'Kubernetes', mount: v.kubernetes!.path ?? 'kubernetes', namespace: v.kubernetes!.namespace, body: { role: v.kubernetes!.role, jwt: opts.jwtFromNode ?? v.kubernetes!.jwt }, who: `role ${v.kubernetes!.role}` };
  if (v.approle) {
    checks.push(warn('login', 'an AppRole login consumes one use of a SecretID whose secret_id_num_uses is limited; use --skip-vault-login for such a SecretID'));
  }
  let token: string | null = null;
  try {
    const r = await call('POST', `auth/${auth.mount}/login`, { namespace: auth.namespace, body: auth.body });
    const a = (r.body?.auth ?? null) as { client_token?: string; token_policies?: string[] } | null;
    if (r.status === 200 && a?.client_token) {
      token = a.client_token;
      checks.push(pass('login', `${auth.kind} login as ${auth.who} (mount ${auth.mount}${auth.namespace ? `, namespace ${auth.namespace}` : ''}) got a token with policies ${(a.token_policies ?? []).join(', ') || '(none)'}`));
    } else {
      const hint = r.errors.some((e) => /invalid role or secret id/i.test(e))
        ? ': the role ID or the secret ID is wrong (or the SecretID is used up or expired)'
        : r.status === 404 ? `: no auth method mounted at ${auth.mount}${auth.namespace ? ` in namespace ${auth.namespace}` : ''}` : '';
      checks.push(fail('login', `${auth.kind} login as ${auth.who} failed: ${why(r)}${hint}`));
    }
  } catch (err) {
    if (!(err instanceof VaultUnreachableError)) throw err;
    checks.push(fail('login', `${auth.kind} login failed: ${err.message}`));
  }
  if (!token) return checks;

  try {
    checks.push(...(await transitChecks(v, token, call)));
  } finally {
    // 6. The preflight token is thrown away whatever happened.
    try {
      const r = await call('POST', 'auth/token/revoke-self', { token, namespace: auth.namespace });
      checks.push(r.status < 300 ? pass('revoke', 'the preflight token was revoked') : warn('revoke', `could not revoke the preflight token: ${why(r)} (it expires with its lease)`));
    } catch (err) {
      checks.push(warn('revoke', `could not revoke the preflight token: ${(err as Error).message} (it expires with its lease)`));
    }
  }
  return checks;
}

type Call = (method: 'GET' | 'POST', path: string, o?: { token?: string; namespace?: string; body?: unknown }) => Promise<VaultResponse>;

async function transitChecks(v: VaultSection, token: string, call: Call): Promise<Check[]> {
  const checks: Check[] = [];
  const mount = v.transit.path ?? 'transit';
  const ns = v.transit.namespace;
  const key = v.transit.key;
  const where = `key ${key} (mount ${mount}${ns ? `, namespace ${ns}` : ''})`;
  const paths = ['encrypt', 'decrypt', 'hmac'].map((op) => `${mount}/${op}/${key}`);

  // 3. The token may update exactly the three paths the KMS uses.
  const caps = await call('POST', 'sys/capabilities-self', { token, namespace: ns, body: { paths } });
  if (caps.status !== 200 || !caps.body) {
    checks.push(fail('capabilities', `capabilities-self failed: ${why(caps)}`));
  } else {
    const missing = paths.filter((p) => {
      const list = caps.body![p];
      return !(Array.isArray(list) && (list.includes('update') || list.includes('root')));
    });
    checks.push(missing.length === 0
      ? pass('capabilities', `the token may update ${paths.join(', ')}`)
      : fail('capabilities', `the token lacks update on ${missing.map((p) => `${p} (has: ${JSON.stringify(caps.body![p] ?? [])})`).join(', ')}; add it to the role's policy`));
  }

  // 4. HMAC of random bytes: proves the key exists and the policy works; stores nothing.
  const hmac = await call('POST', `${mount}/hmac/${key}`, { token, namespace: ns, body: { input: randomBytes(32).toString('base64') } });
  const mac = (hmac.body?.data as { hmac?: string } | undefined)?.hmac;
  if (hmac.status === 200 && mac?.startsWith('vault:v')) checks.push(pass('hmac', `transit ${where} computed an HMAC of random bytes`));
  else checks.push(fail('hmac', `HMAC with transit ${where} failed: ${why(hmac)}${hmac.errors.some((e) => /not found/i.test(e)) ? ': the transit key does not exist' : ''}`));

  // 5. Encrypt and decrypt random bytes: the unseal path of the KMS, end to end.
  const plaintext = randomBytes(32).toString('base64');
  const enc = await call('POST', `${mount}/encrypt/${key}`, { token, namespace: ns, body: { plaintext } });
  const ciphertext = (enc.body?.data as { ciphertext?: string } | undefined)?.ciphertext;
  if (enc.status !== 200 || !ciphertext) {
    checks.push(fail('encrypt/decrypt', `encrypt with transit ${where} failed: ${why(enc)}${enc.errors.some((e) => /not found/i.test(e)) ? ': the transit key does not exist' : ''}`));
    return checks;
  }
  const dec = await call('POST', `${mount}/decrypt/${key}`, { token, namespace: ns, body: { ciphertext } });
  const back = (dec.body?.data as { plaintext?: string } | undefined)?.plaintext;
  if (dec.status === 200 && back === plaintext) checks.push(pass('encrypt/decrypt', `round trip of 32 random bytes with transit ${where}`));
  else checks.push(fail('encrypt/decrypt', `decrypt with transit ${where} ${dec.status === 200 ? 'returned different bytes' : `failed: ${why(dec)}`}`));
  return checks;
}
