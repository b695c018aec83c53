import { join } from 'node:path';
import { pino } from 'pino';
import type { AgentCliOptions } from '../../../src/config/index.js';
import { ControlServer } from '../../../src/control/index.js';
import { runCli } from '../../../src/cli/index.js';
import { makeStub, makeTempDir, type Stub, type TempDir } from '../control/fixtures.js';

/** A real ControlServer on a temp socket with stub handlers, and runCli with captured output. */
export interface CliHarness {
  tmp: TempDir;
  stub: Stub;
  socketPath: string;
  agentCalls: AgentCliOptions[];
  agentExitCode: number;
  run(args: string[], env?: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }>;
  close(): Promise<void>;
}

export async function startHarness(): Promise<CliHarness> {
  const tmp = makeTempDir();
  const stub = makeStub();
  const socketPath = join(tmp.dir, 'control.sock');
  const server = new ControlServer({ socketPath, handlers: stub.handlers, logger: pino({ level: 'silent' }) });
  await server.start();
  const harness: CliHarness = {
    tmp,
    stub,
    socketPath,
    agentCalls: [],
    agentExitCode: 0,
    async run(args, env = {}) {
      let stdout = '';
      let stderr = '';
      const code = await runCli(['node', 'osmoda-mesh', ...args], {
        runAgent: async (options) => {
          harness.agentCalls.push(options);
          return harness.agentExitCode;
        },
        stdout: { write: (s: string) => (stdout += s) },
        stderr: { write: (s: string) => (stderr += s) },
        env: { OSMODA_MESH_CONTROL: socketPath, ...env },
        clock: { now: () => Date.parse('2029-12-01T00:00:00.000Z') },
        timeoutMs: 5_000,
      });
      return { code, stdout, stderr };
    },
    async close() {
      await server.close();
      tmp.cleanup();
    },
  };
  return harness;
}
