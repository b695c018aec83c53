import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AGENT_ENVIRONMENT, AGENT_NODE_FLAGS } from '../src/daemon/process-settings.js';
import { assertAlive, control, tail } from './paths.js';

/**
 * Two real agent processes on loopback, one service: how fast does a bulk TCP transfer go through
 * the mesh, against the same transfer direct, in the same run. Client, server and both agents
 * share this machine's cores, so the ratio is what to read, not the absolute figure.
 */

const run = promisify(execFile);
const MAIN = new URL('../src/main.js', import.meta.url).pathname;

export interface LoopbackResult {
  path: 'direct' | 'mesh';
  bytes: number;
  ms: number;
  mbPerSec: number;
  agentCpuMs?: number;
  agentRssMb?: number[];
}

function blobServer(port: number, bytes: number): Promise<Server> {
  const chunk = Buffer.alloc(1 << 20, 7);
  const server = createServer((socket) => {
    let left = Math.ceil(bytes / chunk.length);
    const write = (): void => {
      while (left > 0) {
        left--;
        if (!socket.write(chunk)) {
          socket.once('drain', write);
          return;
        }
      }
      socket.end();
    };
    write();
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

function fetch(host: string, port: number): Promise<{ bytes: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let bytes = 0;
    const socket = connect(port, host);
    socket.on('data', (d) => (bytes += d.length));
    socket.on('end', () => resolve({ bytes, ms: performance.now() - start }));
    socket.on('error', reject);
  });
}

/** CPU time (user + system) a process has used, from /proc/<pid>/stat (fields 14 and 15, in ticks of 10 ms). */
function cpuMs(pid: number): number {
  const afterComm = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(afterComm[11]) + Number(afterComm[12])) * 10;
}

async function rssMb(pid: number): Promise<number> {
  const { stdout } = await run('ps', ['-o', 'rss=', '-p', String(pid)]);
  return Math.round(Number(stdout.trim()) / 1024);
}

export async function agentsLoopback(totalBytes: number, basePort: number): Promise<LoopbackResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'osmoda-bench-'));
  const agents: ChildProcess[] = [];
  const server = await blobServer(basePort + 10, totalBytes);
  try {
    for (const [i, name] of ['a', 'b'].entries()) {
      const port = basePort + i;
      // the agent's log goes to a file in the run's temp dir, quoted when it does not come up
      const logFd = openSync(join(dir, `${name}.log`), 'w', 0o600);
      agents.push(
        spawn(process.execPath, [...AGENT_NODE_FLAGS, MAIN, 'agent', '--state-dir', join(dir, name), '--listen', `127.0.0.1:${port}`, '--public-endpoint', `ws://127.0.0.1:${port}`, '--control', join(dir, `${name}.sock`), '--dns', 'off', '--vip-range', `127.${91 + i}.0.0/16`], {
          env: { ...process.env, ...AGENT_ENVIRONMENT, OSMODA_MESH_NODE_NAME: name },
          stdio: ['ignore', logFd, logFd],
        }),
      );
      closeSync(logFd);
    }
    const cli = (name: string, ...args: string[]) => run(process.execPath, [MAIN, ...args, '--control', join(dir, `${name}.sock`)]);
    // Both agents answer on their control sockets before the mesh is made: on a busy 2-core host
    // Node's start-up alone can take seconds.
    for (const [i, name] of ['a', 'b'].entries()) {
      const readyBy = performance.now() + 20_000;
      for (let k = 0; ; k++) {
        try {
          await control(join(dir, `${name}.sock`), 'GET', '/v1/status');
          break;
        } catch (err) {
          assertAlive(agents[i]!, `agent ${name}`, join(dir, `${name}.log`));
          if (k >= 800 || performance.now() > readyBy) throw new Error(`agent ${name} did not answer on its control socket within 20 s (${(err as Error).message}); its log: ${tail(join(dir, `${name}.log`))}`);
          await new Promise((r) => setTimeout(r, 25));
        }
      }
    }
    await cli('a', 'init', '--mesh', 'bench');
    const { stdout: token } = await cli('a', 'token', 'create');
    writeFileSync(join(dir, 'token'), token, { mode: 0o600 });
    await cli('b', 'join', '--token-file', join(dir, 'token'));
    await cli('b', 'expose', 'blob', String(basePort + 10));
    let vip = '';
    for (let i = 0; i < 100 && vip === ''; i++) {
      try {
        const { stdout } = await cli('a', 'resolve', 'blob', '--json');
        const answer = JSON.parse(stdout) as { addresses: string[]; service: { providers: { state: string }[] } };
        if (answer.service.providers.some((p) => p.state === 'up')) vip = answer.addresses[0] ?? '';
      } catch {
        // not known yet
      }
      if (vip === '') await new Promise((r) => setTimeout(r, 100));
    }
    if (vip === '') throw new Error('the service never became reachable through the mesh');
    const results: LoopbackResult[] = [];
    const direct = await fetch('127.0.0.1', basePort + 10);
    results.push({ path: 'direct', bytes: direct.bytes, ms: direct.ms, mbPerSec: direct.bytes / direct.ms / 1000 });
    await fetch(vip, basePort + 10); // warm-up: JIT, window growth
    const before = agents.map((a) => cpuMs(a.pid!));
    const mesh = await fetch(vip, basePort + 10);
    const after = agents.map((a) => cpuMs(a.pid!));
    results.push({
      path: 'mesh',
      bytes: mesh.bytes,
      ms: mesh.ms,
      mbPerSec: mesh.bytes / mesh.ms / 1000,
      agentCpuMs: after.reduce((s, v, i) => s + v - before[i]!, 0),
      agentRssMb: await Promise.all(agents.map((a) => rssMb(a.pid!))),
    });
    return results;
  } finally {
    for (const a of agents) a.kill('SIGTERM');
    server.close();
    await new Promise((r) => setTimeout(r, 300));
    for (const a of agents) a.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}
