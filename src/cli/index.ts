export { buildProgram, runCli } from './program.js';
export { CliExit, UsageError, controlSocketPath, type CliDeps, type TextSink } from './context.js';
export { ExitCodes, exitCodeFor, hintFor } from './exit-codes.js';
