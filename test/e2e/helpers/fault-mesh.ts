/**
 * The mesh the fault-injection suites break: one agent per host of a Topology (the first host
 * creates the mesh, the others join it), traffic.mjs servers exposed as mesh services, and quick
 * views of every agent through its control socket (a Unix socket is reachable from the test
 * process whatever namespace the agent runs in, so polling costs no process spawn).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { join } from 'node:path';
import { ControlClient } from '../../../src/control/client.js';
import type { StatusResponse } from '../../../src/control/protocol.js';
import { AgentFleet, pollUntil } from './agents.js';
import { createTopology, isPidRunning, NAME_PREFIX, TMP_ROOT } from './netns.js';
import type { Topology } from './netns.js';
import { procStats, startTrafficServer } from './traffic.js';
import type { ProcStats, TrafficProcess } from './traffic.js';

export const TUNNEL_PORT = 18800;

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface PeerWatch {
  /** Ends the watch; per "from>to": the states seen (sorted) and the largest heartbeat age. */
  stop(): Promise<Map<string, { states: string[]; maxHeartbeatAgeMs: number }>>;
}

export interface ExposedServer {
  host: string;
  name: string;
  port: number;
}

export interface FaultMeshOptions {
  /** Part of the temp dir's name. */
  label: string;
  /** The first host creates the mesh (admin); the others join with one token. */
  hosts: readonly string[];
  /** Hosts whose agents start but do not join (a test joins them later). */
  spare?: readonly string[];
  servers?: readonly ExposedServer[];
}

export class FaultMesh {
  readonly topo: Topology;
  readonly fleet: AgentFleet;
  readonly dir: string;
  readonly hosts: readonly string[];
  readonly servers = new Map<string, TrafficProcess>();
  readonly #controls = new Map<string, ControlClient>();

  constructor(topo: Topology, dir: string, hosts: readonly string[]) {
    this.topo = topo;
    this.dir = dir;
    this.hosts = hosts;
    this.fleet = new AgentFleet(topo, dir);
  }

  ip(host: string): string {
    const ip = this.topo.hosts[host]?.ip;
    if (ip === undefined) throw new Error(`no address for host ${host}`);
    return ip;
  }

  tokenFile(label: string): string {
    return join(this.dir, `${label}.token`);
  }

  /** Keeps a token in a 0600 file, as users are told to (never on a command line). */
  writeToken(label: string, token: string): void {
    writeFileSync(this.tokenFile(label), `${token}\n`, { mode: 0o600 });
  }

  stateDir(host: string): string {
    return join(this.dir, `${host}-state`);
  }

  startAgent(host: string): void {
    const ip = this.ip(host);
    this.fleet.start(host, {
      args: ['--state-dir', this.stateDir(host), '--listen', `${ip}:${TUNNEL_PORT}`, '--public-endpoint', `ws://${ip}:${TUNNEL_PORT}`, '--dns', 'off'],
      // every namespace shares the machine's host name, so each node is named after its host
      env: { OSMODA_MESH_NODE_NAME: host },
    });
  }

  control(host: string): ControlClient {
    let client = this.#controls.get(host);
    if (client === undefined) {
      client = new ControlClient({ socketPath: this.fleet.sockOf(host), timeoutMs: 5_000 });
      this.#controls.set(host, client);
    }
    return client;
  }

  /** Status through the control socket, or undefined while the agent does not answer. */
  async status(host: string): Promise<StatusResponse | undefined> {
    try {
      return await this.control(host).status();
    } catch {
      return undefined;
    }
  }

  async peerState(from: string, to: string): Promise<string> {
    const s = await this.status(from);
    if (s === undefined) return 'no answer';
    return s.peers.find((p) => p.name === to)?.state ?? 'absent';
  }

  pidOf(host: string): number {
    const pid = this.fleet.child(host)?.pid;
    if (pid === undefined || !isPidRunning(pid)) throw new Error(`agent ${host} is not running`);
    return pid;
  }

  stats(host: string): ProcStats {
    return procStats(this.pidOf(host));
  }

  /**
   * Polls `from`'s view of `to` every `intervalMs` until it is `state`; returns the ms since
   * `sinceMs` (a Date.now()) at the first poll that saw it.
   */
  async waitPeerState(from: string, to: string, state: string, sinceMs: number, timeoutMs: number, intervalMs = 100): Promise<number> {
    let last = '';
    return pollUntil(
      `${from} sees ${to} ${state}`,
      { timeoutMs, intervalMs },
      async () => {
        last = await this.peerState(from, to);
        return last === state ? Date.now() - sinceMs : undefined;
      },
      () => `${to}=${last}`,
    );
  }

  /**
   * Polls the given views (from → to) every `intervalMs` until stop(): which states each showed
   * and the oldest heartbeat it reported (how close the tunnel came to the 30 s silence limit).
   */
  watchPeers(pairs: readonly (readonly [string, string])[], intervalMs = 250): PeerWatch {
    const seen = new Map<string, { states: Set<string>; maxHeartbeatAgeMs: number }>();
    for (const [from, to] of pairs) seen.set(`${from}>${to}`, { states: new Set(), maxHeartbeatAgeMs: 0 });
    let isStopped = false;
    const loop = (async () => {
      // bounded by stop() and by a count: a forgotten watch ends by itself after an hour
      for (let i = 0; i < 3_600_000 / intervalMs && !isStopped; i++) {
        await Promise.all(
          pairs.map(async ([from, to]) => {
            const view = (await this.status(from))?.peers.find((p) => p.name === to);
            const entry = seen.get(`${from}>${to}`)!;
            entry.states.add(view?.state ?? 'no answer');
            entry.maxHeartbeatAgeMs = Math.max(entry.maxHeartbeatAgeMs, view?.lastHeartbeatAgeMs ?? 0);
          }),
        );
        await sleep(intervalMs);
      }
    })();
    return {
      stop: async () => {
        isStopped = true;
        await loop;
        return new Map([...seen].map(([k, v]) => [k, { states: [...v.states].sort(), maxHeartbeatAgeMs: v.maxHeartbeatAgeMs }]));
      },
    };
  }

  /**
   * Polls until `from` no longer shows `to` up: `down`, or `connecting` when a redial had already
   * started by the time of the poll (after losing a tunnel, status shows `connecting` while a dial
   * is in flight). Returns the ms since `sinceMs`, the state seen, and `silentMs`: how long before
   * that poll `from` had last heard from `to` (from the last heartbeat age it showed while up),
   * which is what the 30 s dead-peer rule counts.
   */
  async waitPeerLost(from: string, to: string, sinceMs: number, timeoutMs: number, intervalMs = 100): Promise<{ ms: number; state: string; silentMs: number }> {
    let last = '';
    let lastHeardAt = Number.NEGATIVE_INFINITY;
    return pollUntil(
      `${from} sees ${to} down`,
      { timeoutMs, intervalMs },
      async () => {
        const view = (await this.status(from))?.peers.find((p) => p.name === to);
        const now = Date.now();
        last = view?.state ?? 'no answer';
        if (last === 'up' && view?.lastHeartbeatAgeMs !== null && view?.lastHeartbeatAgeMs !== undefined) {
          lastHeardAt = Math.max(lastHeardAt, now - view.lastHeartbeatAgeMs);
        }
        // never seen up since sinceMs: count the silence from there (it began no later)
        const heardAt = Number.isFinite(lastHeardAt) ? lastHeardAt : sinceMs;
        return last === 'down' || last === 'connecting' ? { ms: now - sinceMs, state: last, silentMs: now - heardAt } : undefined;
      },
      () => `${to}=${last}`,
    );
  }

  /** Waits until `from` knows service `name` with `provider` up; returns its VIP. */
  async vip(from: string, name: string, provider: string, timeoutMs = 30_000): Promise<string> {
    let last = '';
    return pollUntil(
      `${from} learns service ${name} from ${provider}`,
      { timeoutMs },
      async () => {
        try {
          const answer = await this.control(from).resolve(name);
          last = JSON.stringify(answer.service.providers);
          const isUp = answer.service.providers.some((p) => p.node === provider && p.state === 'up');
          return isUp && answer.addresses[0] !== undefined ? answer.addresses[0] : undefined;
        } catch (err) {
          last = (err as Error).message;
          return undefined;
        }
      },
      () => last,
    );
  }

  /** Waits until the agent answers on its control socket; returns the ms since `sinceMs`. */
  async waitReady(host: string, sinceMs: number, timeoutMs = 20_000): Promise<number> {
    return pollUntil(`agent ${host} answers on its control socket`, { timeoutMs, intervalMs: 50 }, async () => {
      const child = this.fleet.child(host);
      if (child !== undefined && (child.exitCode !== null || child.signalCode !== null)) {
        throw new Error(`agent ${host} exited (${child.exitCode ?? child.signalCode}) before answering`);
      }
      return (await this.status(host)) === undefined ? undefined : Date.now() - sinceMs;
    });
  }

  /** Stops servers and agents, deletes the namespaces; keeps the work dir (logs, state) when `isKept`. */
  async close(isKept: boolean): Promise<void> {
    try {
      for (const server of this.servers.values()) await server.stop().catch(() => undefined);
      await this.fleet.stopAll();
    } finally {
      await this.topo.destroy();
      if (isKept) console.error(`faults e2e: agent logs and state kept in ${this.dir}`);
      else rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

/** Builds the topology, starts every agent, forms the mesh, starts and exposes the servers. */
export async function createFaultMesh(opts: FaultMeshOptions): Promise<FaultMesh> {
  const dir = mkdtempSync(join(TMP_ROOT, `${NAME_PREFIX}${process.pid}-${opts.label}-`));
  let topo: Topology;
  try {
    topo = await createTopology({ hosts: [...opts.hosts, ...(opts.spare ?? [])] });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const mesh = new FaultMesh(topo, dir, opts.hosts);
  try {
    const [admin, ...joiners] = opts.hosts;
    if (admin === undefined) throw new Error('createFaultMesh: no hosts');
    const all = [...opts.hosts, ...(opts.spare ?? [])];
    for (const host of all) mesh.startAgent(host);
    await Promise.all(all.map((h) => mesh.fleet.waitAnswers(h)));
    await mesh.fleet.cliOk(admin, ['init', '--mesh', `faults-${opts.label}`]);
    if (joiners.length > 0) {
      mesh.writeToken('join', (await mesh.fleet.cliOk(admin, ['token', 'create', '--uses', String(joiners.length)])).trim());
      for (const host of joiners) await mesh.fleet.cliOk(host, ['join', '--token-file', mesh.tokenFile('join'), '--name', host]);
      await mesh.fleet.waitAllUp(opts.hosts, 60_000);
    }
    for (const s of opts.servers ?? []) {
      mesh.servers.set(s.name, await startTrafficServer(topo, s.host, s.port));
      await mesh.fleet.cliOk(s.host, ['expose', s.name, String(s.port)]);
    }
    for (const s of opts.servers ?? []) for (const h of opts.hosts) if (h !== s.host) await mesh.vip(h, s.name, s.host);
  } catch (err) {
    mesh.fleet.printLogs('fault mesh setup failed');
    await mesh.close(true);
    throw err;
  }
  return mesh;
}

/** Milliseconds as seconds with one decimal, for the FAULT lines. */
export function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}

/**
 * One fault mesh for the enclosing describe: built before its tests, agent logs printed for a
 * failed test, torn down after (state kept when something failed). Returns the mesh's accessor.
 */
export function useFaultMesh(opts: FaultMeshOptions): () => FaultMesh {
  let mesh: FaultMesh | undefined;
  let hasFailed = false;
  beforeAll(async () => {
    mesh = await createFaultMesh(opts);
  }, 180_000);
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') {
      hasFailed = true;
      mesh?.fleet.printLogs(`'${ctx.task.name}' failed`);
    }
  });
  afterAll(async () => {
    await mesh?.close(hasFailed);
  }, 60_000);
  return () => {
    if (mesh === undefined) throw new Error('fault mesh was not created');
    return mesh;
  };
}
