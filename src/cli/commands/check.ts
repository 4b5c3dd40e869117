import { checkOffline, renderFindings } from '../../inventory/check.js';
import { EXIT } from '../../exit-codes.js';
import type { Output } from '../output.js';

/**
 * `rollout check INVENTORY`: validates the inventory and its playbook offline
 * (no node, no Vault contacted) and prints every problem at once as
 * `file:line: key: message`. Exit 0 when there is no error (warnings allowed), 2 otherwise.
 */
export async function checkCommand(file: string, io: Output): Promise<number> {
  const { findings, inventory, playbook } = await checkOffline(file);
  const errors = findings.filter((f) => f.level === 'error');
  if (findings.length > 0) (errors.length > 0 ? io.err.bind(io) : io.out.bind(io))(renderFindings(findings));
  if (errors.length > 0) {
    io.err(`\n${errors.length} problem(s): fix them, then run rollout check again. Nothing was contacted.`);
    return EXIT.invalidInput;
  }
  const inv = inventory!;
  const vars = inv.vars as Record<string, unknown>;
  const phases = playbook!.phases.filter((p) => p.when === undefined || vars[p.when] === true).map((p) => p.name);
  io.result(`${inv.file}: valid. ${inv.nodes.length} node(s): ${inv.nodes.map((n) => n.name).join(', ')}; playbook ${inv.playbookFile}; phases: ${phases.join(', ')}. Nothing was contacted (rollout plan reads the nodes).`);
  return EXIT.ok;
}
