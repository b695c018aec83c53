export * from './schema.js';
export * from './validate.js';
export type { AgentCliOptions, RunAgent } from './agent-options.js';
