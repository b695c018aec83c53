/**
 * `npm run demo`: three real agents on one machine, no root needed. They share the loopback
 * interface, so each gets its own tunnel port, its own VIP range and its own DNS address on an
 * unprivileged port (the whole of 127.0.0.0/8 is local on Linux, so binding 127.7N.x.y works for
 * any user). Every mesh action goes through the real CLI (`node dist/src/main.js …`) so what is
 * printed is what a user would type.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { promises as dnsPromises } from 'node:dns';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, get as httpGet, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, MeshError, type ErrorCode } from '../src/errors.js';
import type { PeerView, ServiceView, ServicesResponse, StatusResponse } from '../src/control/index.js';
import { AGENT_ENVIRONMENT, AGENT_NODE_FLAGS } from '../src/daemon/process-settings.js';

const HELLO_ANSWER = 'hello from beta through the mesh\n';
/** Every wait in the demo gives up after this long, with a message saying what did not happen. */
const WAIT_MS = 20_000;
const POLL_MS = 250;
/** Agents get SIGTERM, then SIGKILL if still running after this long. */
const KILL_GRACE_MS = 3_000;
const CLI_TIMEOUT_MS = 15_000;
const LOG_TAIL_LINES = 30;
/** How many alternative ports to try when a preferred one is taken. */
const PORT_ATTEMPTS = 40;

interface AgentSpec {
  name: 'alpha' | 'beta' | 'gamma';
  /** 1, 2 or 3: picks the VIP range 127.7N.0.0/16 and the DNS address 127.7N.0.53. */
  index: number;
  listenPort: number;
  vipRange: string;
  dnsHost: string;
  dnsPort: number;
  dir: string;
  stateDir: string;
  control: string;
  logPath: string;
}

interface RunningAgent {
  spec: AgentSpec;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited: boolean;
}

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

interface DemoState {
  dir: string | undefined;
  agents: RunningAgent[];
  server: HttpServer | undefined;
  /** The agent the current step talks to: its log tail is shown if the step fails. */
  focus: AgentSpec | undefined;
  isStopping: boolean;
  cleanup: Promise<void> | undefined;
}

function fail(code: ErrorCode, message: string, cause?: unknown): never {
  throw new MeshError(code, message, cause === undefined ? {} : { cause });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function isTcpFree(host: string, port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createTcpServer();
    server.once('error', () => done(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => done(true)));
  });
}

async function isUdpFree(host: string, port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = createSocket('udp4');
    socket.once('error', () => {
      socket.close();
      done(false);
    });
    socket.bind({ address: host, port, exclusive: true }, () => socket.close(() => done(true)));
  });
}

/** The preferred port if it is free, else the next free one `step` apart; never one already taken. */
async function pickPort(host: string, preferred: number, step: number, taken: Set<number>, needsUdp: boolean, what: string): Promise<number> {
  for (let i = 0; i < PORT_ATTEMPTS; i++) {
    const port = preferred + i * step;
    if (port > 65535) break;
    if (taken.has(port)) continue;
    if ((await isTcpFree(host, port)) && (!needsUdp || (await isUdpFree(host, port)))) {
      taken.add(port);
      return port;
    }
  }
  fail(ErrorCodes.PORT_IN_USE, `${what}: no free port on ${host} among ${PORT_ATTEMPTS} tried from ${preferred} in steps of ${step}`);
}

/** The agents and CLI must not pick up the user's own OSMODA_MESH_* settings (config file, socket, token). */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('OSMODA_MESH_')) env[key] = value;
  return { ...env, ...extra };
}

function tailOf(path: string, lines: number): string {
  try {
    const all = readFileSync(path, 'utf8').trimEnd().split('\n');
    return all.slice(-lines).join('\n');
  } catch (err) {
    return `(could not read ${path}: ${errorText(err)})`;
  }
}

async function runDemo(out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const mainJs = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'main.js');
  const state: DemoState = { dir: undefined, agents: [], server: undefined, focus: undefined, isStopping: false, cleanup: undefined };
  const say = (text = ''): void => {
    out.write(text + '\n');
  };
  const shown = (path: string): string => (state.dir === undefined ? path : path.split(state.dir).join('$DEMO_DIR'));
  const indent = (text: string): string =>
    text
      .trimEnd()
      .split('\n')
      .map((line) => (line.trim() === '' ? '' : '     ' + line))
      .join('\n');

  const cleanup = (): Promise<void> => {
    state.cleanup ??= (async () => {
      state.isStopping = true;
      await Promise.all(state.agents.map((agent) => stopAgent(agent)));
      const server = state.server;
      if (server !== undefined) {
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
      }
      if (state.dir !== undefined) await rm(state.dir, { recursive: true, force: true });
    })();
    return state.cleanup;
  };

  async function stopAgent(agent: RunningAgent): Promise<void> {
    if (agent.hasExited) return;
    agent.child.kill('SIGTERM');
    const timer = setTimeout(() => agent.child.kill('SIGKILL'), KILL_GRACE_MS);
    await agent.exited;
    clearTimeout(timer);
  }

  // Ctrl-C also reaches the agents (same process group); either way they are stopped and the
  // temp dir removed before this process exits.
  const onSignal = (signal: NodeJS.Signals): void => {
    if (state.isStopping) return;
    say(`\n${signal === 'SIGINT' ? 'Interrupted' : `Got ${signal}`}: stopping the agents and removing the temp dir…`);
    void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  // Last resort if something throws past the cleanup: never leave agents running.
  const onExit = (): void => {
    for (const agent of state.agents) if (!agent.hasExited) agent.child.kill('SIGKILL');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', onExit);

  /** Rejects as soon as an agent exits on its own, so no step waits out its timeout for a dead agent. */
  let rejectAgentDied: (err: unknown) => void = () => undefined;
  const agentDied = new Promise<never>((_, reject) => {
    rejectAgentDied = reject;
  });
  agentDied.catch(() => undefined);

  async function cli(args: string[], opts: { display?: string; quiet?: boolean; okCodes?: number[] } = {}): Promise<CliResult> {
    if (!opts.quiet) say(`   $ ${opts.display ?? shown(['osmoda-mesh', ...args].join(' '))}`);
    const result = await new Promise<CliResult>((done) => {
      execFile(process.execPath, [mainJs, ...args], { env: cleanEnv(), timeout: CLI_TIMEOUT_MS, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
        done({ code, stdout: String(stdout), stderr: String(stderr) + (err !== null && typeof err.code !== 'number' ? errorText(err) : '') });
      });
    });
    const okCodes = opts.okCodes ?? [0];
    if (!okCodes.includes(result.code)) {
      fail(
        ErrorCodes.INTERNAL,
        `\`osmoda-mesh ${shown(args.join(' '))}\` exited ${result.code}, expected ${okCodes.join(' or ')}:\n${indent(result.stderr || result.stdout || '(no output)')}`,
      );
    }
    return result;
  }

  async function readJson<T>(agent: AgentSpec, verb: 'status' | 'services'): Promise<T | undefined> {
    // status exits 3 when no peer is up but still answers; 1 (agent not ready) means "not yet"; a
    // usage error (2) is a bug in the demo and fails at once.
    const result = await cli([verb, '--json', '--control', agent.control], { quiet: true, okCodes: [0, 1, 3] });
    if (result.code !== 0 && result.code !== 3) return undefined;
    try {
      return JSON.parse(result.stdout) as T;
    } catch {
      return undefined;
    }
  }

  /** Polls `check` until it returns a value; gives up after WAIT_MS with `what` in the message. */
  async function waitFor<T>(what: string, code: ErrorCode, check: () => Promise<T | undefined>): Promise<{ value: T; tookMs: number }> {
    const started = Date.now();
    const deadline = started + WAIT_MS;
    const maxPolls = Math.ceil(WAIT_MS / POLL_MS) + 1;
    for (let poll = 0; poll < maxPolls && Date.now() < deadline; poll++) {
      const value = await Promise.race([check(), agentDied]);
      if (value !== undefined) return { value, tookMs: Date.now() - started };
      await Promise.race([sleep(POLL_MS), agentDied]);
    }
    fail(code, `timed out after ${WAIT_MS / 1000} s waiting until ${what}`);
  }

  async function startAgent(spec: AgentSpec): Promise<RunningAgent> {
    await mkdir(spec.dir, { mode: 0o700 });
    const args = [
      'agent',
      '--state-dir', spec.stateDir,
      '--listen', `127.0.0.1:${spec.listenPort}`,
      '--public-endpoint', `ws://127.0.0.1:${spec.listenPort}`,
      '--control', spec.control,
      '--dns', `${spec.dnsHost}:${spec.dnsPort}`,
      '--vip-range', spec.vipRange,
    ];
    say(`   $ ${shown(`OSMODA_MESH_NODE_NAME=${spec.name} osmoda-mesh ${args.join(' ')} >${spec.logPath} 2>&1 &`)}`);
    const logFd = openSync(spec.logPath, 'a', 0o600);
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, [...AGENT_NODE_FLAGS, mainJs, ...args], { env: cleanEnv({ ...AGENT_ENVIRONMENT, OSMODA_MESH_NODE_NAME: spec.name }), stdio: ['ignore', logFd, logFd] });
    } finally {
      closeSync(logFd);
    }
    const agent: RunningAgent = {
      spec,
      child,
      hasExited: false,
      exited: new Promise((done) => {
        child.once('exit', (code, signal) => {
          agent.hasExited = true;
          done({ code, signal });
          if (!state.isStopping) {
            state.focus = spec;
            rejectAgentDied(
              new MeshError(ErrorCodes.AGENT_UNREACHABLE, `agent ${spec.name} exited on its own (${signal ?? `exit code ${code}`})`),
            );
          }
        });
        child.once('error', (err) => {
          if (agent.hasExited) return;
          agent.hasExited = true;
          done({ code: null, signal: null });
          state.focus = spec;
          rejectAgentDied(new MeshError(ErrorCodes.AGENT_UNREACHABLE, `agent ${spec.name} could not be started: ${err.message}`, { cause: err }));
        });
      }),
    };
    state.agents.push(agent);
    return agent;
  }

  async function steps(): Promise<void> {
    state.dir = await mkdtemp(join(tmpdir(), 'osmoda-mesh-demo-'));
    await chmod(state.dir, 0o700);
    const dir = state.dir;
    say(`osmoda-mesh demo: three agents on this machine, no root needed.`);
    say(`Working in DEMO_DIR=${dir} (mode 0700; removed at the end).`);
    say();

    const takenTcp = new Set<number>();
    const specs: AgentSpec[] = [];
    for (const [i, name] of (['alpha', 'beta', 'gamma'] as const).entries()) {
      const index = i + 1;
      const agentDir = join(dir, name);
      const dnsHost = `127.7${index}.0.53`;
      specs.push({
        name,
        index,
        listenPort: await pickPort('127.0.0.1', 18810 + index, 10, takenTcp, false, `${name} tunnel port`),
        vipRange: `127.7${index}.0.0/16`,
        dnsHost,
        // each DNS has its own address, so the same port range can be reused per agent
        dnsPort: await pickPort(dnsHost, 5370 + index, 100, new Set(), true, `${name} DNS port`),
        dir: agentDir,
        stateDir: join(agentDir, 'state'),
        control: join(agentDir, 'control.sock'),
        logPath: join(agentDir, 'agent.log'),
      });
    }
    const [alpha, beta, gamma] = specs as [AgentSpec, AgentSpec, AgentSpec];

    say('1. Start three agents, each with its own tunnel port, VIP range and DNS address:');
    for (const spec of specs) {
      state.focus = spec;
      await startAgent(spec);
    }
    for (const spec of specs) {
      state.focus = spec;
      await waitFor(`agent ${spec.name} answers on its control socket ${shown(spec.control)}`, ErrorCodes.AGENT_UNREACHABLE, () =>
        readJson<StatusResponse>(spec, 'status'),
      );
    }
    say(
      `   Started three agents: ${specs.map((s) => `${s.name} 127.0.0.1:${s.listenPort}`).join(', ')}. ` +
        `Their logs are in ${specs.map((s) => shown(s.logPath)).join(', ')}.`,
    );
    say();

    say('2. Create the mesh "demo" on alpha, which becomes its first admin:');
    state.focus = alpha;
    say(indent((await cli(['init', '--mesh', 'demo', '--control', alpha.control])).stdout));
    say();

    say('3. Create a join token on alpha, good for two joins:');
    const tokenPath = join(dir, 'join-token');
    const tokenResult = await cli(['token', 'create', '--uses', '2', '--control', alpha.control], {
      display: shown(`osmoda-mesh token create --uses 2 --control ${alpha.control} > ${tokenPath}`),
    });
    // The token is a credential: it goes to a file only its owner can read and is never printed.
    await writeFile(tokenPath, tokenResult.stdout.trim() + '\n', { mode: 0o600, flag: 'wx' });
    say(`   Wrote the token to ${shown(tokenPath)} (mode 0600); it is a secret, so it is not shown here.`);
    say();

    say('4. beta and gamma join the mesh with that token:');
    for (const spec of [beta, gamma]) {
      state.focus = spec;
      say(indent((await cli(['join', '--token-file', tokenPath, '--control', spec.control])).stdout));
    }
    const names = specs.map((s) => s.name);
    state.focus = alpha;
    const allUp = await waitFor('alpha, beta and gamma all see each other as up', ErrorCodes.TUNNEL_CLOSED, async () => {
      for (const spec of specs) {
        state.focus = spec;
        const status = await readJson<StatusResponse>(spec, 'status');
        const upNames = new Set(status?.peers.filter((p: PeerView) => p.state === 'up').map((p) => p.name) ?? []);
        if (!names.every((n) => n === spec.name || upNames.has(n))) return undefined;
      }
      return true;
    });
    say(`   All three agents see each other as up after ${(allUp.tookMs / 1000).toFixed(1)} s: each pair has its own Noise-encrypted WebSocket tunnel.`);
    say();

    say('5. Start a small HTTP server in this demo process and expose it as "hello" on beta:');
    const seenFrom: string[] = [];
    const server = createHttpServer((req, res) => {
      seenFrom.push(`${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`);
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
      res.end(HELLO_ANSWER);
    });
    state.server = server;
    const httpPort = await listenHttp(server, takenTcp);
    say(`   The server listens on 127.0.0.1:${httpPort} and answers ${JSON.stringify(HELLO_ANSWER)}.`);
    state.focus = beta;
    say(indent((await cli(['expose', 'hello', String(httpPort), '--control', beta.control])).stdout));
    state.focus = gamma;
    const learned = await waitFor('gamma lists the service hello with beta up as its provider', ErrorCodes.NO_PROVIDER, async () => {
      const services = await readJson<ServicesResponse>(gamma, 'services');
      return services?.services.find(
        (s: ServiceView) => s.name === 'hello' && s.vip !== '' && s.providers.some((p) => p.node === 'beta' && p.state === 'up') && s.problems.length === 0,
      );
    });
    const vip = learned.value.vip;
    say(`   gamma learned about hello after ${(learned.tookMs / 1000).toFixed(1)} s and gave it the virtual IP ${vip} from its own range.`);
    say();

    say("6. gamma's view of the mesh:");
    const status = await cli(['status', '--control', gamma.control], { okCodes: [0, 3] });
    say(indent(status.stdout));
    say();

    const dnsServer = `${gamma.dnsHost}:${gamma.dnsPort}`;
    say(`7. From gamma's side, look up "hello" with gamma's DNS (${dnsServer}) and fetch http://hello:${httpPort}/:`);
    const resolver = new dnsPromises.Resolver({ timeout: 2_000, tries: 2 });
    resolver.setServers([dnsServer]);
    let addresses: string[];
    try {
      addresses = await Promise.race([resolver.resolve4('hello'), agentDied]);
    } catch (err) {
      if (err instanceof MeshError) throw err;
      fail(ErrorCodes.DNS_MALFORMED, `gamma's DNS ${dnsServer} did not answer "hello": ${errorText(err)}`, err);
    }
    const answered = addresses[0];
    if (answered === undefined) fail(ErrorCodes.UNKNOWN_SERVICE, `gamma's DNS ${dnsServer} answered "hello" with no address, expected ${vip}`);
    if (answered !== vip) fail(ErrorCodes.INTERNAL, `gamma's DNS ${dnsServer} answered "hello" with ${answered}, expected the VIP ${vip} from \`services\``);
    say(`   gamma's DNS answered ${answered}.`);
    const { body, clientSide } = await Promise.race([fetchThroughVip(answered, httpPort), agentDied]);
    if (body !== HELLO_ANSWER) fail(ErrorCodes.INTERNAL, `GET http://hello:${httpPort}/ answered ${JSON.stringify(body)}, expected ${JSON.stringify(HELLO_ANSWER)}`);
    say(`   The answer: ${JSON.stringify(body)}`);
    const betaPath = (await readJson<StatusResponse>(gamma, 'status'))?.peers.find((p) => p.name === 'beta')?.path;
    say(
      `   The path: gamma's DNS answered ${answered}; the request went gamma → encrypted tunnel → beta → 127.0.0.1:${httpPort}` +
        (betaPath ? ` (gamma's tunnel to beta: ${betaPath}).` : '.'),
    );
    say(
      `   The client's TCP connection was ${clientSide} → ${answered}:${httpPort} (to gamma's agent); the server saw a ` +
        `different one, from ${seenFrom.at(-1) ?? '?'} (beta's agent dialling it).`,
    );
    say();

    say('What you just saw:');
    say(
      [
        '  Three agents formed a mesh: alpha created it, and beta and gamma joined with a',
        '  two-use token that was only ever kept in a 0600 file. Each agent opened an encrypted',
        '  tunnel to the others. beta exposed a plain local HTTP server as "hello"; gamma was told',
        `  about it, gave it a virtual IP (${vip}) and answered "hello" in its DNS. A normal HTTP`,
        `  client on gamma's side connected to ${vip}:${httpPort}; gamma's agent carried the bytes through`,
        '  the tunnel to beta, and beta\'s agent dialled 127.0.0.1, where the server lives. Neither the',
        '  client nor the server knows about the mesh.',
      ].join('\n'),
    );
    say();
  }

  async function listenHttp(server: HttpServer, taken: Set<number>): Promise<number> {
    // A fixed, readable port when free; otherwise any free one.
    for (const port of [18080, 0]) {
      if (port !== 0 && taken.has(port)) continue;
      const ok = await new Promise<boolean>((done) => {
        const onError = (): void => done(false);
        server.once('error', onError);
        server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
          server.off('error', onError);
          done(true);
        });
      });
      const address = server.address();
      if (ok && address !== null && typeof address === 'object') return address.port;
    }
    fail(ErrorCodes.PORT_IN_USE, 'demo HTTP server: could not listen on 127.0.0.1');
  }

  async function fetchThroughVip(vip: string, port: number): Promise<{ body: string; clientSide: string }> {
    // The VIP listener may trail the services list by a moment; a refused connect is retried a
    // few times, anything else is a failure.
    const attempts = 8;
    for (let attempt = 1; ; attempt++) {
      try {
        return await getOnce(vip, port);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ECONNREFUSED' || attempt >= attempts) {
          fail(ErrorCodes.DIAL_FAILED, `GET http://hello:${port}/ via ${vip}:${port} failed: ${errorText(err)}`, err);
        }
        await sleep(POLL_MS);
      }
    }
  }

  function getOnce(vip: string, port: number): Promise<{ body: string; clientSide: string }> {
    return new Promise((done, reject) => {
      const req = httpGet({ host: vip, port, path: '/', headers: { host: `hello:${port}` }, agent: false, timeout: 5_000 }, (res) => {
        const clientSide = `${res.socket.localAddress ?? '?'}:${res.socket.localPort ?? '?'}`;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`HTTP status ${res.statusCode}, expected 200`));
          else done({ body: Buffer.concat(chunks).toString('utf8'), clientSide });
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
      req.on('error', reject);
    });
  }

  let exitCode = 0;
  const work = steps();
  work.catch(() => undefined);
  try {
    await Promise.race([work, agentDied]);
  } catch (err) {
    if (state.isStopping) return 130;
    exitCode = 1;
    say();
    say(`The demo failed: ${errorText(err)}`);
    const focus = state.focus;
    if (focus !== undefined) {
      say(`Last ${LOG_TAIL_LINES} lines of ${focus.name}'s log (${shown(focus.logPath)}):`);
      say(indent(tailOf(focus.logPath, LOG_TAIL_LINES)));
    }
  }
  if (state.isStopping) return 130;
  try {
    await cleanup();
  } catch (err) {
    say(`Cleanup failed: ${errorText(err)}${state.dir === undefined ? '' : ` (remove ${state.dir} by hand)`}`);
    exitCode = 1;
  }
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.off('exit', onExit);
  if (state.agents.length > 0) say(`Stopped ${state.agents.map((a) => a.spec.name).join(', ')} and removed the demo directory.`);
  say(exitCode === 0 ? 'Demo finished.' : 'Demo failed (exit 1).');
  return exitCode;
}

process.exitCode = await runDemo();
