#!/usr/bin/env node
// The `rollout` command: checks the Node.js version before anything else loads,
// so an unsupported one gets one clear line rather than an error from deep in
// a module it cannot run. No static imports here (they would load first), and
// no syntax an old Node.js cannot parse.

// The Node.js majors rollout is tested on: CI runs the suite on each (test/run-suite.sh).
const SUPPORTED_NODE = '20, 22 or 24';

const major = Number(process.versions.node.split('.')[0]);
if (major < 20) {
  process.stderr.write(`rollout: Node.js ${process.versions.node} is too old; rollout needs Node.js ${SUPPORTED_NODE} (install a current LTS from https://nodejs.org or your distribution)\n`);
  // EXIT.invalidInput (2): nothing was contacted; src/exit-codes.ts is not loaded yet.
  process.exit(2);
}
// Node.js 22.1+ keeps the compiled code of rollout's modules on disk (in the
// system temp dir) between runs, which shortens every start; older ones have no such cache.
const { enableCompileCache } = (await import('node:module')) as { enableCompileCache?: () => unknown };
enableCompileCache?.();
await import('./main.js');
