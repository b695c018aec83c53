/**
 * The request/response and connection-rate tool of the network benchmarks: the same small Node
 * program on every path, so what differs between paths is the path. Run inside a namespace:
 *
 *   node echo.js server ECHO_PORT CONN_PORT      echo everything on ECHO_PORT; on CONN_PORT answer the
 *                                                first byte with one byte and close
 *   node echo.js rr HOST PORT COUNT WARMUP       COUNT sequential 64-byte round trips on one connection
 *   node echo.js conn HOST PORT LOOPS SECONDS    LOOPS concurrent loops of connect, 1 byte each way, close
 *   node echo.js probe HOST PORT TIMEOUT_MS      one byte each way, retried every 5 ms until it works
 *   node echo.js relay HOST TARGET_HOST L:T,...  a plain TCP relay (no encryption, no multiplexing): each
 *                                                connection to HOST:L is piped to TARGET_HOST:T; the
 *                                                floor of what Node's sockets cost the mesh's agents
 *
 * The clients print one JSON line on stdout. Latency is read with performance.now() around each
 * round trip; there is no other work in the process, so it is the path plus two event-loop wake-ups.
 */
import { connect, createServer, type Socket } from 'node:net';

const RR_BYTES = 64;
const PROBE_RETRY_MS = 5;
const PROBE_ATTEMPT_TIMEOUT_MS = 2_000;

function print(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n');
}

function server(echoPort: number, connPort: number): void {
  const echo = createServer({ noDelay: true }, (s) => {
    s.on('error', () => s.destroy());
    s.on('data', (d) => s.write(d));
  });
  const conn = createServer({ noDelay: true }, (s) => {
    s.on('error', () => s.destroy());
    s.once('data', () => s.end(ONE));
  });
  echo.listen({ port: echoPort, host: '0.0.0.0', backlog: 4096 });
  conn.listen({ port: connPort, host: '0.0.0.0', backlog: 4096 });
  let ready = 0;
  const onListening = (): void => {
    if (++ready === 2) process.stdout.write('listening\n');
  };
  echo.once('listening', onListening);
  conn.once('listening', onListening);
}

const ONE = Buffer.from([0x2a]);

function rr(host: string, port: number, count: number, warmup: number): void {
  const msg = Buffer.alloc(RR_BYTES, 0x61);
  const samplesUs = new Float64Array(count);
  const socket = connect({ host, port, noDelay: true });
  let pending = 0;
  let done = -warmup;
  let start = 0;
  const startedAt = performance.now();
  const send = (): void => {
    pending = RR_BYTES;
    start = performance.now();
    socket.write(msg);
  };
  socket.on('error', (err) => {
    print({ error: `rr ${host}:${port}: ${err.message} after ${Math.max(done, 0)} round trips` });
    process.exit(1);
  });
  socket.on('connect', send);
  socket.on('data', (d) => {
    pending -= d.length;
    if (pending > 0) return;
    const end = performance.now();
    if (done >= 0) samplesUs[done] = (end - start) * 1000;
    done++;
    if (done < count) {
      send();
      return;
    }
    socket.destroy();
    samplesUs.sort();
    const pick = (q: number): number => samplesUs[Math.min(count - 1, Math.floor(q * count))]!;
    print({ count, p50_us: pick(0.5), p90_us: pick(0.9), p99_us: pick(0.99), max_us: samplesUs[count - 1], total_ms: performance.now() - startedAt });
  });
}

function conn(host: string, port: number, loops: number, seconds: number): void {
  const deadline = performance.now() + seconds * 1000;
  let connections = 0;
  let errors = 0;
  let running = loops;
  let lastError = '';
  let firstErrorAt = 0;
  let beforeFirstError = 0;
  const start = performance.now();
  const report = (lastWords: string): void => {
    const elapsed = (performance.now() - start) / 1000;
    const firstErrorS = errors === 0 ? null : (firstErrorAt - start) / 1000;
    print({
      connections,
      errors,
      last_error: lastWords,
      seconds: elapsed,
      per_s: connections / elapsed,
      first_error_s: firstErrorS,
      per_s_before_first_error: firstErrorS === null || firstErrorS === 0 ? null : beforeFirstError / firstErrorS,
    });
  };
  const failed = (message: string): void => {
    if (errors++ === 0) {
      firstErrorAt = performance.now();
      beforeFirstError = connections;
    }
    lastError = message;
  };
  const finish = (): void => {
    if (--running > 0) return;
    report(lastError);
  };
  const loop = (): void => {
    if (performance.now() >= deadline) {
      finish();
      return;
    }
    let isSettled = false;
    const s: Socket = connect({ host, port, noDelay: true });
    s.once('connect', () => s.write(ONE));
    s.once('data', () => {
      isSettled = true;
      connections++;
      s.destroy();
      loop();
    });
    s.on('error', (err) => {
      if (isSettled) return;
      isSettled = true;
      failed(err.message);
      s.destroy();
      setTimeout(loop, 1);
    });
    s.on('close', () => {
      if (isSettled) return;
      isSettled = true;
      failed('closed before the answer');
      setTimeout(loop, 1);
    });
  };
  for (let i = 0; i < loops; i++) loop();
  // A path that stops answering must not hang the run: report what was counted and leave.
  setTimeout(() => {
    report(`${running} loop(s) stuck`);
    process.exit(0);
  }, seconds * 1000 + 10_000).unref();
}

function attempt(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, PROBE_ATTEMPT_TIMEOUT_MS);
    const settle = (ok: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => s.write(ONE));
    s.once('data', () => settle(true));
    s.once('error', () => settle(false));
    s.once('close', () => settle(false));
  });
}

/** For readiness and cold start: `ok_at_ns` is process.hrtime (CLOCK_MONOTONIC, the same clock in every process). */
async function probe(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let attempts = 0;
  while (performance.now() < deadline) {
    attempts++;
    const t0 = performance.now();
    if (await attempt(host, port)) {
      const okAt = process.hrtime.bigint();
      print({ ok: true, attempts, ok_at_ns: okAt.toString(), attempt_ms: performance.now() - t0 });
      return;
    }
    await new Promise((r) => setTimeout(r, PROBE_RETRY_MS));
  }
  print({ ok: false, attempts, error: `no answer from ${host}:${port} within ${timeoutMs} ms` });
  process.exitCode = 1;
}

/**
 * What any Node program relaying a TCP connection does at least: accept it, dial the target, pipe
 * both ways with Nagle off. Half-closes pass through (pipe ends the other side); an error on
 * either side drops both.
 */
function relay(host: string, targetHost: string, portMap: string): void {
  const pairs = portMap.split(',').map((pair) => pair.split(':').map(Number) as [number, number]);
  let ready = 0;
  for (const [listenPort, targetPort] of pairs) {
    const server = createServer({ noDelay: true }, (inbound) => {
      const outbound = connect({ host: targetHost, port: targetPort, noDelay: true });
      const drop = (): void => {
        inbound.destroy();
        outbound.destroy();
      };
      inbound.on('error', drop);
      outbound.on('error', drop);
      inbound.pipe(outbound);
      outbound.pipe(inbound);
    });
    server.listen({ port: listenPort, host, backlog: 4096 }, () => {
      if (++ready === pairs.length) process.stdout.write('listening\n');
    });
  }
}

const [mode, a, b, c, d] = process.argv.slice(2);
switch (mode) {
  case 'server':
    server(Number(a), Number(b));
    break;
  case 'rr':
    rr(a!, Number(b), Number(c), Number(d ?? 1000));
    break;
  case 'conn':
    conn(a!, Number(b), Number(c), Number(d));
    break;
  case 'probe':
    void probe(a!, Number(b), Number(c ?? 10_000));
    break;
  case 'relay':
    relay(a!, b!, c!);
    break;
  default:
    process.stderr.write('usage: echo.js server ECHO_PORT CONN_PORT | rr HOST PORT COUNT [WARMUP] | conn HOST PORT LOOPS SECONDS | probe HOST PORT [TIMEOUT_MS] | relay HOST TARGET_HOST LISTEN_PORT:TARGET_PORT,...\n');
    process.exitCode = 2;
}
