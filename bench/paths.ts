/**
 * The paths between the client namespace and the servers in the server namespace, each set up from
 * scratch in the topology's temp dir and torn down by close(): direct TCP, the mesh (two agents as
 * separate processes, joined with a token, services reached through the client side's VIPs),
 * `ssh -N -L`, wireguard-go, nebula and socat. Every path leads to the same three servers in the
 * server namespace: iperf3 on 5201, the echo server on 7000 and its one-byte answer on 7001.
 */
import { request } from 'node:http';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { BenchTopology, Side } from './netns.js';
import { AGENT_ENVIRONMENT } from '../src/daemon/process-settings.js';

export const SERVER_PORTS = { iperf: 5201, echo: 7000, conn: 7001 } as const;
export type Service = keyof typeof SERVER_PORTS;

const AGENT_MAIN = new URL('../src/main.js', import.meta.url).pathname;
export const ECHO_MAIN = new URL('./echo.js', import.meta.url).pathname;

export interface Target {
  host: string;
  port: number;
}

export interface BenchPath {
  name: string;
  targets: Readonly<Record<Service, Target>>;
  /** Root pids of the path's own processes on each side (descendants are counted too); empty for direct. */
  pids(): Record<Side, number[]>;
  /** Extra facts for the JSON (versions, MTU, ...). */
  meta: Record<string, unknown>;
  /** Mesh only: restarts the client-side agent and returns when it was spawned (process.hrtime). */
  restartClient?: () => Promise<bigint>;
  /** Mesh only: streams each agent reports open to its peer (GET /v1/peers). */
  streamsOpen?: () => Promise<Record<Side, number>>;
  /** Mesh only: restarts both agents (state kept) and waits until the services answer again. */
  restartBoth?: () => Promise<void>;
  /** Mesh only: polls the client agent's control socket until its peer is up; returns when that was seen (process.hrtime). */
  waitPeerUp?: (timeoutMs: number) => Promise<bigint>;
  close(): Promise<void>;
}

export class SkipPath extends Error {}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function tail(path: string, chars = 1500): string {
  try {
    const text = readFileSync(path, 'utf8');
    return text.length > chars ? `…${text.slice(-chars)}` : text;
  } catch {
    return '';
  }
}

/** Waits until a one-byte exchange with the conn server works through `target` from the client namespace. */
export async function waitReachable(topo: BenchTopology, target: Target, timeoutMs: number, what: string): Promise<{ okAtNs: bigint; attemptMs: number; attempts: number }> {
  const r = await topo.exec('client', process.execPath, [ECHO_MAIN, 'probe', target.host, String(target.port), String(timeoutMs)], { timeoutMs: timeoutMs + 10_000 });
  let answer: { ok?: boolean; ok_at_ns?: string; attempt_ms?: number; attempts?: number; error?: string } = {};
  try {
    answer = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as typeof answer;
  } catch {
    // reported below
  }
  if (answer.ok !== true) throw new Error(`${what}: ${target.host}:${target.port} never answered from the client namespace: ${answer.error ?? r.stderr.trim().slice(0, 500)}`);
  return { okAtNs: BigInt(answer.ok_at_ns!), attemptMs: answer.attempt_ms!, attempts: answer.attempts! };
}

function logTo(topo: BenchTopology, name: string): { fd: number; path: string } {
  const path = join(topo.dir, `${name}.log`);
  return { fd: openSync(path, 'a'), path };
}

function spawnLogged(topo: BenchTopology, side: Side, name: string, cmd: string, args: readonly string[], env?: NodeJS.ProcessEnv): { child: ChildProcess; log: string } {
  const { fd, path } = logTo(topo, name);
  try {
    const child = topo.spawn(side, cmd, args, { stdio: ['ignore', fd, fd], ...(env === undefined ? {} : { env }) });
    return { child, log: path };
  } finally {
    closeSync(fd);
  }
}

export function assertAlive(child: ChildProcess, what: string, log: string): void {
  if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}): ${tail(log)}`);
}

/** The iperf3 and echo servers in the server namespace, shared by every path. */
export async function startServers(topo: BenchTopology, iperf3: string): Promise<{ restartIperf(): Promise<void>; close(): Promise<void> }> {
  let iperf = spawnLogged(topo, 'server', 'iperf3-server', iperf3, ['-s', '-p', String(SERVER_PORTS.iperf)]);
  const echo = topo.spawn('server', process.execPath, [ECHO_MAIN, 'server', String(SERVER_PORTS.echo), String(SERVER_PORTS.conn)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    echo.stdout!.once('data', () => resolve());
    echo.once('exit', (code) => reject(new Error(`echo server exited (${code})`)));
  });
  const waitIperf = async (): Promise<void> => {
    for (let i = 0; i < 100; i++) {
      const r = await topo.exec('server', 'ss', ['-Hltn', `sport = :${SERVER_PORTS.iperf}`]);
      if (r.stdout.trim() !== '') return;
      assertAlive(iperf.child, 'iperf3 -s', iperf.log);
      await sleep(50);
    }
    throw new Error(`iperf3 -s never listened: ${tail(iperf.log)}`);
  };
  await waitIperf();
  return {
    async restartIperf() {
      await topo.kill(iperf.child, 1_000);
      iperf = spawnLogged(topo, 'server', 'iperf3-server', iperf3, ['-s', '-p', String(SERVER_PORTS.iperf)]);
      await waitIperf();
    },
    async close() {
      await topo.kill(iperf.child, 1_000);
      await topo.kill(echo, 1_000);
    },
  };
}

function sameTargets(host: string, offset = 0): Record<Service, Target> {
  return {
    iperf: { host, port: SERVER_PORTS.iperf + offset },
    echo: { host, port: SERVER_PORTS.echo + offset },
    conn: { host, port: SERVER_PORTS.conn + offset },
  };
}

export function directPath(topo: BenchTopology): BenchPath {
  return {
    name: 'direct',
    targets: sameTargets(topo.ip.server),
    pids: () => ({ client: [], server: [] }),
    meta: { mtu: 1500 },
    close: async () => undefined,
  };
}

// ---------------------------------------------------------------- mesh

export function control<T>(socketPath: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; json: T }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request({ socketPath, method, path, headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': payload.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as T });
        } catch (err) {
          reject(err as Error);
        }
      });
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`control ${path}: timeout`)));
    req.on('error', reject);
    req.end(payload);
  });
}

async function controlOk<T>(socketPath: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const r = await control<T & { code?: string; message?: string }>(socketPath, method, path, body);
  if (r.status !== 200) throw new Error(`control ${method} ${path}: ${r.status} ${r.json.code ?? ''} ${r.json.message ?? ''}`);
  return r.json;
}

export interface MeshOptions {
  /** Row name, e.g. 'mesh' or 'mesh (node 22)'. */
  name: string;
  nodePath: string;
  nodeVersion: string;
  /** Node/V8 flags before main.js: AGENT_NODE_FLAGS as installed, or none for the comparison row. */
  nodeFlags: readonly string[];
  /** AGENT_ENVIRONMENT as installed, or none for the comparison row (unset even when the harness has them). */
  env: Readonly<Record<string, string>>;
  /** 0, 1, 2…: selects the tunnel port and VIP range so several meshes share the namespaces. */
  index: number;
}

/** The harness's environment without AGENT_ENVIRONMENT's variables (a caller may have set them), then `env`. */
function agentEnvironment(env: Readonly<Record<string, string>>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { ...process.env };
  for (const name of Object.keys(AGENT_ENVIRONMENT)) delete base[name];
  return { ...base, ...env };
}

/** `env` as the `NAME=value` words a row's meta shows. */
function assignments(env: Readonly<Record<string, string>>): string {
  return Object.entries(env).map(([name, value]) => `${name}=${value}`).join(' ');
}

export async function meshPath(topo: BenchTopology, opts: MeshOptions): Promise<BenchPath> {
  const tunnelPort = 18_800 + opts.index;
  const dir = join(topo.dir, `mesh${opts.index}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const nodes: Record<Side, { config: string; sock: string; child?: ChildProcess; log: string }> = {} as never;
  for (const side of ['client', 'server'] as const) {
    const sock = join(dir, `${side}.sock`);
    const config = join(dir, `${side}.json`);
    writeFileSync(
      config,
      JSON.stringify({
        nodeName: side,
        stateDir: join(dir, `${side}-state`),
        listen: `${topo.ip[side]}:${tunnelPort}`,
        publicEndpoints: [`ws://${topo.ip[side]}:${tunnelPort}`],
        control: sock,
        dns: { enable: false },
        vipRange: `127.${77 + opts.index}.0.0/16`,
        // Per-frame logs are trace; warn keeps the log file out of the measurement.
        logLevel: 'warn',
      }),
    );
    nodes[side] = { config, sock, log: join(topo.dir, `mesh${opts.index}-${side}.log`) };
  }
  const start = (side: Side): void => {
    const n = nodes[side];
    n.child = spawnLogged(topo, side, `mesh${opts.index}-${side}`, opts.nodePath, [...opts.nodeFlags, AGENT_MAIN, 'agent', '--config', n.config], agentEnvironment(opts.env)).child;
  };
  const waitAnswers = async (side: Side): Promise<void> => {
    for (let i = 0; i < 400; i++) {
      try {
        await control(nodes[side].sock, 'GET', '/v1/status');
        return;
      } catch {
        assertAlive(nodes[side].child!, `agent ${side} (${opts.name})`, nodes[side].log);
        await sleep(25);
      }
    }
    throw new Error(`agent ${side} (${opts.name}) never answered on ${nodes[side].sock}: ${tail(nodes[side].log)}`);
  };
  start('server');
  start('client');
  const close = async (): Promise<void> => {
    for (const side of ['client', 'server'] as const) if (nodes[side].child !== undefined) await topo.kill(nodes[side].child!, 3_000);
  };
  try {
    await Promise.all([waitAnswers('server'), waitAnswers('client')]);
    await controlOk(nodes.server.sock, 'POST', '/v1/init', { mesh: 'bench' });
    const { token } = await controlOk<{ token: string }>(nodes.server.sock, 'POST', '/v1/tokens', { uses: 1 });
    await controlOk(nodes.client.sock, 'POST', '/v1/join', { token, name: 'client' });
    for (const [service, port] of Object.entries(SERVER_PORTS)) {
      await controlOk(nodes.server.sock, 'POST', '/v1/expose', { name: service, port, target: `127.0.0.1:${port}` });
    }
    const targets = {} as Record<Service, Target>;
    for (const service of Object.keys(SERVER_PORTS) as Service[]) {
      for (let i = 0; i < 600 && targets[service] === undefined; i++) {
        const r = await control<{ addresses?: string[]; service?: { providers: { state: string }[] } }>(nodes.client.sock, 'GET', `/v1/resolve?name=${service}`);
        const vip = r.json.addresses?.[0];
        if (r.status === 200 && vip !== undefined && r.json.service?.providers.some((p) => p.state === 'up') === true) targets[service] = { host: vip, port: SERVER_PORTS[service] };
        else await sleep(50);
      }
      if (targets[service] === undefined) throw new Error(`${opts.name}: the client never learned service ${service}: ${tail(nodes.client.log)}`);
    }
    await waitReachable(topo, targets.conn, 20_000, opts.name);
    return {
      name: opts.name,
      targets,
      pids: () => ({ client: [nodes.client.child!.pid!], server: [nodes.server.child!.pid!] }),
      meta: { node: opts.nodeVersion, nodeFlags: opts.nodeFlags.join(' '), env: assignments(opts.env), tunnel: `ws://${topo.ip.server}:${tunnelPort}`, vips: Object.fromEntries(Object.entries(targets).map(([k, t]) => [k, t.host])) },
      async restartClient() {
        await topo.kill(nodes.client.child!, 3_000);
        const t0 = process.hrtime.bigint();
        start('client');
        return t0;
      },
      async streamsOpen() {
        const count = async (side: Side): Promise<number> => {
          const r = await controlOk<{ peers: { streams: number }[] }>(nodes[side].sock, 'GET', '/v1/peers');
          return r.peers.reduce((sum, p) => sum + p.streams, 0);
        };
        return { client: await count('client'), server: await count('server') };
      },
      async restartBoth() {
        for (const side of ['client', 'server'] as const) await topo.kill(nodes[side].child!, 3_000);
        start('server');
        start('client');
        await Promise.all([waitAnswers('server'), waitAnswers('client')]);
        await waitReachable(topo, targets.conn, 30_000, `${opts.name} after restarting both agents`);
      },
      async waitPeerUp(timeoutMs) {
        const deadline = performance.now() + timeoutMs;
        while (performance.now() < deadline) {
          try {
            const r = await control<{ peers?: { state: string }[] }>(nodes.client.sock, 'GET', '/v1/peers');
            if (r.json.peers?.some((p) => p.state === 'up') === true) return process.hrtime.bigint();
          } catch {
            // socket not there yet
          }
          await sleep(10);
        }
        throw new Error(`${opts.name}: the restarted client agent saw no peer up within ${timeoutMs} ms: ${tail(nodes.client.log)}`);
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

// ---------------------------------------------------------------- ssh -L

const SSH_PORT = 2222;
const SSH_LOCAL_OFFSET = 20_000;
const SSH_CIPHER = 'chacha20-poly1305@openssh.com';

export async function sshPath(topo: BenchTopology, tools: Record<string, string>): Promise<BenchPath> {
  const dir = join(topo.dir, 'ssh');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const key of ['host_key', 'client_key']) {
    await topo.execOk('client', tools['ssh-keygen']!, ['-q', '-t', 'ed25519', '-N', '', '-C', 'osmoda-bench', '-f', join(dir, key)]);
  }
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client_key.pub')), { mode: 0o600 });
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${SSH_PORT}`,
      `ListenAddress ${topo.ip.server}`,
      `HostKey ${join(dir, 'host_key')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      // the temp dir is ours; its parents' modes are not sshd's business here
      'StrictModes no',
      `Ciphers ${SSH_CIPHER}`,
      'Compression no',
      'AllowTcpForwarding yes',
      'X11Forwarding no',
      'PrintMotd no',
      'UseDNS no',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  // Debian's sshd refuses to start without its privilege-separation directory (made by its init script, which never ran here).
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const sshd = spawnLogged(topo, 'server', 'sshd', tools.sshd!, ['-D', '-e', '-f', config]);
  const forwards = (Object.keys(SERVER_PORTS) as Service[]).flatMap((s) => ['-L', `127.0.0.1:${SERVER_PORTS[s] + SSH_LOCAL_OFFSET}:127.0.0.1:${SERVER_PORTS[s]}`]);
  let ssh: { child: ChildProcess; log: string } | undefined;
  const close = async (): Promise<void> => {
    if (ssh !== undefined) await topo.kill(ssh.child, 2_000);
    await topo.kill(sshd.child, 2_000);
  };
  try {
    for (let i = 0; i < 100; i++) {
      const r = await topo.exec('server', 'ss', ['-Hltn', `sport = :${SSH_PORT}`]);
      if (r.stdout.trim() !== '') break;
      assertAlive(sshd.child, 'sshd', sshd.log);
      await sleep(50);
    }
    ssh = spawnLogged(topo, 'client', 'ssh', tools.ssh!, [
      '-N', '-F', '/dev/null', '-i', join(dir, 'client_key'), '-p', String(SSH_PORT),
      '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', `UserKnownHostsFile=/dev/null`,
      '-o', 'ExitOnForwardFailure=yes', '-o', `Ciphers=${SSH_CIPHER}`, '-o', 'Compression=no', '-o', 'LogLevel=ERROR',
      ...forwards,
      `root@${topo.ip.server}`,
    ]);
    const targets = sameTargets('127.0.0.1', SSH_LOCAL_OFFSET);
    try {
      await waitReachable(topo, targets.conn, 15_000, 'ssh -L');
    } catch (err) {
      throw new Error(`${(err as Error).message}; ssh: ${tail(ssh.log)}; sshd: ${tail(sshd.log)}`);
    }
    const sshChild = ssh.child;
    return {
      name: 'ssh -L',
      targets,
      pids: () => ({ client: [sshChild.pid!], server: [sshd.child.pid!] }),
      meta: { cipher: SSH_CIPHER },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

// ---------------------------------------------------------------- wireguard-go

const WG_PORT = 51_820;
const WG_MTU = 1420;

export async function wireguardPath(topo: BenchTopology, tools: Record<string, string>): Promise<BenchPath> {
  const dir = join(topo.dir, 'wg');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const overlay = { client: `10.202.${topo.id}.1`, server: `10.202.${topo.id}.2` } as const;
  const dev = { client: `wb${topo.id}c`, server: `wb${topo.id}s` } as const;
  const pub = {} as Record<Side, string>;
  for (const side of ['client', 'server'] as const) {
    const key = (await topo.execOk(side, tools.wg!, ['genkey'])).stdout.trim();
    writeFileSync(join(dir, `${side}.key`), `${key}\n`, { mode: 0o600 });
    pub[side] = (await topo.execOk(side, tools.wg!, ['pubkey'], { input: `${key}\n` })).stdout.trim();
  }
  const daemons: { child: ChildProcess; log: string }[] = [];
  const close = async (): Promise<void> => {
    for (const d of daemons) await topo.kill(d.child, 2_000);
  };
  try {
    for (const side of ['client', 'server'] as const) {
      // -f: foreground, so the pid we hold is the daemon. The variable silences the "use the kernel module" banner's refusal on old builds.
      const d = spawnLogged(topo, side, `wireguard-go-${side}`, tools['wireguard-go']!, ['-f', dev[side]], { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1', LOG_LEVEL: 'error' });
      daemons.push(d);
      let isUp = false;
      for (let i = 0; i < 100 && !isUp; i++) {
        isUp = (await topo.exec(side, 'ip', ['link', 'show', dev[side]])).code === 0 && (await topo.exec(side, tools.wg!, ['show', dev[side]])).code === 0;
        if (!isUp) {
          assertAlive(d.child, `wireguard-go (${side})`, d.log);
          await sleep(50);
        }
      }
      if (!isUp) throw new Error(`wireguard-go (${side}) never made ${dev[side]}: ${tail(d.log)}`);
      const other: Side = side === 'client' ? 'server' : 'client';
      await topo.execOk(side, tools.wg!, ['set', dev[side], 'private-key', join(dir, `${side}.key`), 'listen-port', String(WG_PORT), 'peer', pub[other], 'endpoint', `${topo.ip[other]}:${WG_PORT}`, 'allowed-ips', `${overlay[other]}/32`]);
      await topo.execOk(side, 'ip', ['addr', 'add', `${overlay[side]}/24`, 'dev', dev[side]]);
      await topo.execOk(side, 'ip', ['link', 'set', dev[side], 'mtu', String(WG_MTU), 'up']);
    }
    const targets = sameTargets(overlay.server);
    await waitReachable(topo, targets.conn, 15_000, 'wireguard-go');
    return {
      name: 'wireguard-go',
      targets,
      pids: () => ({ client: [daemons[0]!.child.pid!], server: [daemons[1]!.child.pid!] }),
      meta: { mtu: WG_MTU },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

// ---------------------------------------------------------------- nebula

const NEBULA_PORT = 4242;
/** nebula's default tun.mtu. */
const NEBULA_MTU = 1300;

export async function nebulaPath(topo: BenchTopology, tools: Record<string, string>): Promise<BenchPath> {
  const dir = join(topo.dir, 'nebula');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const overlay = { client: `10.203.${topo.id}.1`, server: `10.203.${topo.id}.2` } as const;
  const dev = { client: `nb${topo.id}c`, server: `nb${topo.id}s` } as const;
  const cert = tools['nebula-cert']!;
  await topo.execOk('client', cert, ['ca', '-name', 'osmoda-bench', '-duration', '24h', '-out-crt', join(dir, 'ca.crt'), '-out-key', join(dir, 'ca.key')]);
  const daemons: { child: ChildProcess; log: string }[] = [];
  const close = async (): Promise<void> => {
    for (const d of daemons) await topo.kill(d.child, 2_000);
  };
  try {
    for (const side of ['client', 'server'] as const) {
      await topo.execOk('client', cert, ['sign', '-ca-crt', join(dir, 'ca.crt'), '-ca-key', join(dir, 'ca.key'), '-name', side, '-ip', `${overlay[side]}/24`, '-duration', '23h', '-out-crt', join(dir, `${side}.crt`), '-out-key', join(dir, `${side}.key`)]);
      const other: Side = side === 'client' ? 'server' : 'client';
      // JSON is YAML: no YAML writer needed.
      const config = {
        pki: { ca: join(dir, 'ca.crt'), cert: join(dir, `${side}.crt`), key: join(dir, `${side}.key`) },
        static_host_map: { [overlay[other]]: [`${topo.ip[other]}:${NEBULA_PORT}`] },
        lighthouse: { am_lighthouse: false, interval: 60, hosts: [] },
        listen: { host: topo.ip[side], port: NEBULA_PORT },
        punchy: { punch: false },
        tun: { disabled: false, dev: dev[side], mtu: NEBULA_MTU },
        logging: { level: 'warning', format: 'text' },
        firewall: {
          outbound: [{ port: 'any', proto: 'any', host: 'any' }],
          inbound: [{ port: 'any', proto: 'any', host: 'any' }],
        },
      };
      writeFileSync(join(dir, `${side}.yml`), JSON.stringify(config, null, 2));
      daemons.push(spawnLogged(topo, side, `nebula-${side}`, tools.nebula!, ['-config', join(dir, `${side}.yml`)]));
    }
    const targets = sameTargets(overlay.server);
    try {
      await waitReachable(topo, targets.conn, 20_000, 'nebula');
    } catch (err) {
      throw new Error(`${(err as Error).message}; client log: ${tail(daemons[0]!.log)}; server log: ${tail(daemons[1]!.log)}`);
    }
    return {
      name: 'nebula',
      targets,
      pids: () => ({ client: [daemons[0]!.child.pid!], server: [daemons[1]!.child.pid!] }),
      meta: { mtu: NEBULA_MTU },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

// ---------------------------------------------------------------- socat

const SOCAT_LOCAL_OFFSET = 30_000;

export async function socatPath(topo: BenchTopology, tools: Record<string, string>): Promise<BenchPath> {
  const relays = (Object.keys(SERVER_PORTS) as Service[]).map((s) =>
    spawnLogged(topo, 'client', `socat-${s}`, tools.socat!, [`TCP-LISTEN:${SERVER_PORTS[s] + SOCAT_LOCAL_OFFSET},bind=127.0.0.1,fork,reuseaddr,backlog=4096`, `TCP:${topo.ip.server}:${SERVER_PORTS[s]},nodelay`]),
  );
  const close = async (): Promise<void> => {
    for (const r of relays) await topo.kill(r.child, 2_000);
  };
  try {
    const targets = sameTargets('127.0.0.1', SOCAT_LOCAL_OFFSET);
    await waitReachable(topo, targets.conn, 15_000, 'socat');
    return {
      name: 'socat',
      targets,
      pids: () => ({ client: relays.map((r) => r.child.pid!), server: [] }),
      meta: { mode: 'fork per connection, default 8 KiB buffer' },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

// ---------------------------------------------------------------- plain Node relays
const NODE_RELAY_OFFSET = 31_000;
const NODE_CHAIN_OFFSET = 32_000;
const NODE_CHAIN_SERVER_OFFSET = 33_000;

export interface NodeRelayOptions {
  /** 'one': a single relay in the client namespace; 'chain': one in each namespace, plain TCP between them. */
  shape: 'one' | 'chain';
  /** Node/V8 flags and environment, the agent's, so that the runtime is the same as the mesh row's. */
  nodeFlags: readonly string[];
  env: Readonly<Record<string, string>>;
}

/**
 * The floor of what Node's sockets cost, as rows of the same run: `echo.js relay`, which accepts,
 * dials and pipes with nothing else (no encryption, no multiplexing, no tunnel). 'one' does the
 * mesh's socket work (one accepted and one dialled socket per connection) in one process; 'chain'
 * has the mesh's and `ssh -L`'s shape, a process on each side, with a TCP connection between them
 * per client connection.
 */
export async function nodeRelayPath(topo: BenchTopology, opts: NodeRelayOptions): Promise<BenchPath> {
  const name = opts.shape === 'one' ? 'node relay' : 'node relay chain';
  const portMap = (listenOffset: number, targetOffset: number): string =>
    (Object.keys(SERVER_PORTS) as Service[]).map((s) => `${SERVER_PORTS[s] + listenOffset}:${SERVER_PORTS[s] + targetOffset}`).join(',');
  const relay = (side: Side, host: string, targetHost: string, map: string): { child: ChildProcess; log: string } =>
    spawnLogged(topo, side, `${name.replaceAll(' ', '-')}-${side}`, process.execPath, [...opts.nodeFlags, ECHO_MAIN, 'relay', host, targetHost, map], agentEnvironment(opts.env));
  const relays =
    opts.shape === 'one'
      ? [relay('client', '127.0.0.1', topo.ip.server, portMap(NODE_RELAY_OFFSET, 0))]
      : [
          relay('client', '127.0.0.1', topo.ip.server, portMap(NODE_CHAIN_OFFSET, NODE_CHAIN_SERVER_OFFSET)),
          relay('server', topo.ip.server, '127.0.0.1', portMap(NODE_CHAIN_SERVER_OFFSET, 0)),
        ];
  const close = async (): Promise<void> => {
    for (const r of relays) await topo.kill(r.child, 2_000);
  };
  try {
    const targets = sameTargets('127.0.0.1', opts.shape === 'one' ? NODE_RELAY_OFFSET : NODE_CHAIN_OFFSET);
    await waitReachable(topo, targets.conn, 15_000, name);
    return {
      name,
      targets,
      pids: () => ({ client: [relays[0]!.child.pid!], server: relays[1] === undefined ? [] : [relays[1].child.pid!] }),
      meta: { mode: opts.shape === 'one' ? 'one Node process: accept, dial, pipe' : 'a Node process on each side, accept, dial, pipe; TCP between them', node: process.version, node_flags: opts.nodeFlags.join(' '), env: assignments(opts.env) },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
