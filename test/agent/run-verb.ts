import { spawnSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AGENT, AGENT_VARS, shellVars } from '../../src/agent/scripts.js';

/** A verb's real script with the prelude's paths moved into a test's temp dir (`vars` override AGENT_VARS). */
export function verbScript(verb: keyof typeof AGENT, vars: Record<string, string> = {}): string {
  const script = AGENT[verb];
  const prelude = shellVars(AGENT_VARS);
  if (!script.includes(prelude)) throw new Error(`the ${verb} script does not carry the prelude`);
  return script.replace(prelude, shellVars({ ...AGENT_VARS, ...vars }));
}

/** Runs a script under /bin/sh as `sh -c SCRIPT rollout-<verb> ARGS`, `bin` first on PATH, `env` added to this process's. */
export function runSh(script: string, opts: { name: string; args?: string[]; stdin?: string | Buffer; bin?: string; env?: Record<string, string> }) {
  const env = { ...process.env, ...opts.env, PATH: opts.bin ? `${opts.bin}:${process.env.PATH}` : process.env.PATH };
  const r = spawnSync('/bin/sh', ['-c', script, opts.name, ...(opts.args ?? [])], { input: opts.stdin ?? '', env, timeout: 20_000 });
  return { code: r.status, out: r.stdout.toString('utf8'), err: r.stderr.toString('utf8') };
}

/** Writes an executable stand-in for a node command into `dir`. */
export function standIn(dir: string, name: string, body: string): void {
  writeFileSync(path.join(dir, name), `#!/bin/sh\n${body}\n`);
  chmodSync(path.join(dir, name), 0o755);
}
