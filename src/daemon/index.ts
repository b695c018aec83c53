import { toMeshError } from '../errors.js';
import { Agent } from './agent.js';
import type { AgentCliOptions, RunAgent } from '../config/index.js';
import { resolveConfig } from './resolve-config.js';
import { AGENT_ENVIRONMENT, AGENT_NODE_FLAGS, missingAgentEnvironment, missingAgentNodeFlags } from './process-settings.js';
import { enableBufferReclaim, isMallocTrimEnabled } from '../util/buffer-reclaim.js';
import { MALLOC_TRIM_HELPER } from '../util/malloc-trim.js';
import { processAead } from '../crypto/noise/index.js';
import { ed25519Backend, x25519Backend } from '../crypto/keys/index.js';

export { Agent } from './agent.js';
export type { AgentInit } from './agent.js';
export type { AgentCliOptions, RunAgent } from '../config/index.js';
export { resolveConfig } from './resolve-config.js';
export { AGENT_ENVIRONMENT, AGENT_NODE_FLAGS, agentShebang, missingAgentEnvironment, missingAgentNodeFlags } from './process-settings.js';

/** `osmoda-mesh agent`: runs until SIGINT/SIGTERM, then closes everything in reverse order. */
export const runAgent: RunAgent = async (options: AgentCliOptions) => {
  let agent: Agent;
  try {
    agent = new Agent({ config: resolveConfig(options, process.env) });
  } catch (err) {
    const error = toMeshError(err);
    process.stderr.write(`error: ${error.message}\n`);
    return 1;
  }
  try {
    await agent.start();
  } catch (err) {
    const error = toMeshError(err);
    agent.logger.fatal({ code: error.code, err: error.message }, 'agent failed to start');
    process.stderr.write(`error: ${error.message}\n`);
    await agent.close().catch(() => undefined);
    return 1;
  }
  if (!enableBufferReclaim()) agent.logger.warn('this Node offers no minor garbage collection: memory under load will be higher');
  if (!isMallocTrimEnabled()) {
    agent.logger.warn(
      { helper: MALLOC_TRIM_HELPER },
      'the malloc_trim helper was not built (no C compiler when `npm run build` ran) or does not load: memory freed after busy spells stays with the process',
    );
  }
  const cipher = processAead();
  agent.logger.info({ aead: cipher.aead.name, x25519: x25519Backend(), ed25519Verify: ed25519Backend() }, 'tunnel cipher: ChaCha20-Poly1305');
  // the problem text says what is in use (the fallback's says node:crypto, slower per message)
  if (cipher.problem !== null) agent.logger.warn({ aead: cipher.aead.name }, cipher.problem);
  const missingFlags = missingAgentNodeFlags();
  if (missingFlags.length > 0) {
    agent.logger.warn(
      { missing: missingFlags, want: AGENT_NODE_FLAGS },
      'node was started without the flags the agent is tuned for (run the installed osmoda-mesh, or node with these flags): expect lower throughput',
    );
  }
  const missingEnvironment = missingAgentEnvironment();
  if (missingEnvironment.length > 0) {
    agent.logger.warn(
      { missing: missingEnvironment, want: AGENT_ENVIRONMENT },
      'node was started without the environment the agent is tuned for (run the installed osmoda-mesh, or set these variables): expect more memory after busy spells',
    );
  }
  // One failed background task must not take every tunnel and stream down with the process: log
  // it loudly and keep serving (systemd restarts the agent if it really dies).
  process.on('unhandledRejection', (reason) => {
    agent.logger.error({ err: toMeshError(reason).message }, 'unhandled rejection (a bug: please report it)');
  });
  return new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      agent.logger.info({ signal }, 'stopping');
      const force = setTimeout(() => resolve(1), 10_000);
      force.unref();
      agent.close().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
};
