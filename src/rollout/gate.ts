import type { GateSpec } from '../playbook/schema.js';
import type { JournalEntry } from './journal.js';

/** A gate spec with its patterns compiled (no `g` flag: RegExp#test would be stateful). */
export type CompiledGate = { ready: string; failOn: RegExp[]; timeoutMs: number; restartTimeoutMs: number };

/** What the journal says about a restart so far. `evidence` holds the deciding lines. */
export type GateVerdict = { status: 'passed' | 'failed' | 'pending'; reason: string; evidence: JournalEntry[] };

/** Pure. Compiles the playbook's gate (patterns case-insensitive). */
export function compileGate(spec: GateSpec): CompiledGate {
  return {
    ready: spec.ready,
    failOn: spec.failOn.map((p) => new RegExp(p, 'i')),
    timeoutMs: spec.timeoutSeconds * 1000,
    restartTimeoutMs: spec.restartTimeoutSeconds * 1000,
  };
}

// What systemd logs when the new process dies or is being restarted in a loop.
const MANAGER_FAILURE = /Main process exited|Scheduled restart job|Start request repeated too quickly|Failed with result|Failed to start/;

/**
 * Pure. Decides the gate from the entries logged after the pre-restart cursor
 * (gateStep applies it to each channel's entries).
 * Lines of the old invocation (its shutdown) are ignored; the first decisive line
 * of the new one wins: a failure pattern or a crash fails at once, the ready line passes.
 */
export function evaluateGate(entries: readonly JournalEntry[], gate: CompiledGate, previousInvocation: string | null): GateVerdict {
  const fresh = entries.filter((e) => e.invocationId === null || e.invocationId !== previousInvocation);
  for (const entry of fresh) {
    if (entry.fromManager) {
      if (MANAGER_FAILURE.test(entry.message)) {
        return { status: 'failed', reason: `the service stopped or is restarting in a loop: ${entry.message}`, evidence: context(fresh, entry) };
      }
      continue;
    }
    const bad = gate.failOn.find((re) => re.test(entry.message));
    if (bad) return { status: 'failed', reason: `a failure line was logged (matches /${bad.source}/)`, evidence: context(fresh, entry) };
    if (entry.message.includes(gate.ready)) return { status: 'passed', reason: 'the ready line was logged by the new process', evidence: [entry] };
  }
  return { status: 'pending', reason: 'waiting for the ready line', evidence: fresh.slice(-5) };
}

// The deciding line with a few before it, so the operator sees why.
function context(entries: readonly JournalEntry[], decisive: JournalEntry): JournalEntry[] {
  const at = entries.indexOf(decisive);
  return entries.slice(Math.max(0, at - 4), at + 1);
}
