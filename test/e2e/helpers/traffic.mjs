// TCP traffic for the fault-injection suites (test/e2e/faults*.test.ts), run with node inside a
// namespace. Every long-lived mode prints one JSON event per line on stdout ({"ev": ...}) and reads
// commands from stdin, so the test can watch it and steer it (helpers/traffic.ts wraps this).
//
//   server HOST PORT
//       On each connection, the first line chooses what to do:
//         "GEN SEED BYTES\n"  sends BYTES of the deterministic stream for SEED, then ends;
//         "ECHO\n"            echoes everything after the line, and ends when the client ends.
//   download HOST PORT SEED BYTES [--rate BYTES_PER_S] [--stall-after BYTES] [--progress-ms MS] [--idle-ms MS]
//       Asks for GEN SEED BYTES and checks every byte against the same generator as it arrives.
//       Events: progress {bytes, ms}, stalled {bytes} (stops reading until stdin says "resume"),
//       and one final event: end {bytes, isPrefixOk, isComplete, ms} when the server closed,
//       error {code, message, seenAs, bytes, isPrefixOk, ms} when the connection was reset (seenAs
//       'eof': it first looked like an early EOF, and a write proved it reset), idle {bytes} (no
//       data for --idle-ms), or
//       stopped {bytes, isPrefixOk} after stdin said "stop".
//   probe HOST PORT SEED BYTES INTERVAL_MS
//       Downloads BYTES again and again, INTERVAL_MS apart: probe-ok {t, ms} or probe-fail {t, code}
//       per attempt, until stdin says "stop" or it is killed.
//   concurrent HOST PORT COUNT BYTES
//       Opens COUNT echo connections at once, sends BYTES on each and reads them back (all stay
//       open together), then prints all-echoed {ms, opened} and holds them until stdin says
//       "close": ends each, waits for every close, and prints summary {ok, failed, errors}.
//   halfclose HOST PORT COUNT BYTES
//       COUNT times, one after another: connects, sends ECHO and BYTES, half-closes at once (FIN),
//       then reads the echo to its end; prints summary {ok, failed, errors}.
//   rate HOST PORT PER_SECOND SECONDS BYTES
//       Opens PER_SECOND echo connections a second for SECONDS, each sending BYTES, reading them
//       back and closing; prints summary {started, ok, failed, errors, p50Ms, p99Ms, maxMs, maxOpen}.
//
// Every event also carries t, the sender's Date.now(). The stream for SEED is the AES-128-CTR
// keystream under key sha256("osmt-blob-v1:SEED")[0..16], IV 0, as in blob-server.mjs (so
// services.ts expectedSha256 describes it too).
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { connect, createServer } from 'node:net';
import { createInterface } from 'node:readline';

const CHUNK = 64 * 1024;
const ZEROS = Buffer.alloc(CHUNK);
const MAX_LINE = 256;
/** Every connection of the echo modes gives up after this long, so no mode can hang forever. */
const CONN_DEADLINE_MS = 60_000;

/** One event line; `t` is the wall clock (Date.now()), so the test can place it against its own timestamps. */
function emit(ev, fields = {}) {
  process.stdout.write(`${JSON.stringify({ ev, t: Date.now(), ...fields })}\n`);
}

function usage(message) {
  console.error(`traffic: ${message}`);
  process.exit(2);
}

function int(text, what, min = 0) {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min) usage(`${what}: expected an integer >= ${min}, got ${text}`);
  return n;
}

function generator(seed) {
  const key = createHash('sha256').update(`osmt-blob-v1:${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return (n) => {
    const out = [];
    for (let left = n; left > 0; left -= CHUNK) out.push(cipher.update(left >= CHUNK ? ZEROS : ZEROS.subarray(0, left)));
    return out.length === 1 ? out[0] : Buffer.concat(out);
  };
}

function onStdin(handlers) {
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => handlers[line.trim()]?.());
  // the test went away: nothing will ever tell us to stop
  rl.on('close', () => {
    if (handlers.stop !== undefined) handlers.stop();
    else process.exit(0);
  });
}

function options(args) {
  const out = {};
  for (let i = 0; i < args.length; i += 2) {
    if (!args[i].startsWith('--') || args[i + 1] === undefined) usage(`bad option ${args[i]}`);
    out[args[i].slice(2)] = int(args[i + 1], args[i]);
  }
  return out;
}

// ---- server -----------------------------------------------------------------------------------

function serve(host, port) {
  const server = createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    let head = Buffer.alloc(0);
    const onData = (chunk) => {
      head = Buffer.concat([head, chunk]);
      const nl = head.indexOf(10);
      if (nl < 0) {
        if (head.length > MAX_LINE) socket.destroy();
        return;
      }
      socket.off('data', onData);
      const line = head.subarray(0, nl).toString('utf8').trim().split(' ');
      const rest = head.subarray(nl + 1);
      if (line[0] === 'GEN' && line.length === 3) {
        // still reading (and discarding): the client's FIN must be seen for the socket to close
        sendGen(socket, line[1], Number(line[2]));
      } else if (line[0] === 'ECHO') {
        if (rest.length > 0) socket.write(rest);
        socket.pipe(socket);
      } else {
        socket.destroy();
      }
    };
    socket.on('data', onData);
  });
  server.maxConnections = 20_000;
  server.on('error', (err) => {
    console.error(`traffic server: ${err.message}`);
    process.exit(1);
  });
  server.listen({ host, port, backlog: 4096 }, () => emit('listening', { host, port }));
}

function sendGen(socket, seed, size) {
  const next = generator(seed);
  let left = size;
  const pump = () => {
    while (left > 0 && !socket.destroyed) {
      const n = Math.min(CHUNK, left);
      left -= n;
      if (!socket.write(next(n))) {
        socket.once('drain', pump);
        return;
      }
    }
    socket.end();
  };
  pump();
}

// ---- download ---------------------------------------------------------------------------------

function download(host, port, seed, size, opts) {
  const expect = generator(seed);
  const start = performance.now();
  const ms = () => Math.round(performance.now() - start);
  let bytes = 0;
  let isPrefixOk = true;
  let isFinished = false;
  let isStalled = false;
  let hasStalled = false;
  let lastDataAt = performance.now();
  let isEofSeen = false;
  // half-open: after an early EOF our side can still write, which tells a FIN from a reset (below)
  const socket = connect({ host, port, noDelay: true, allowHalfOpen: true });
  const finish = (ev, fields = {}) => {
    if (isFinished) return;
    isFinished = true;
    clearInterval(ticker);
    emit(ev, { bytes, isPrefixOk, ms: ms(), ...fields });
    socket.destroy();
    process.exit(0);
  };
  socket.on('connect', () => socket.write(`GEN ${seed} ${size}\n`));
  socket.on('data', (chunk) => {
    lastDataAt = performance.now();
    if (isPrefixOk && !expect(chunk.length).equals(chunk)) isPrefixOk = false;
    bytes += chunk.length;
    if (opts['stall-after'] !== undefined && !hasStalled && bytes >= opts['stall-after']) {
      isStalled = true;
      hasStalled = true;
      socket.pause();
      emit('stalled', { bytes, isPrefixOk, ms: ms() });
      return;
    }
    if (opts.rate !== undefined) {
      // pace the reader: pause until the average rate is back under the target
      const aheadMs = (bytes / opts.rate) * 1000 - (performance.now() - start);
      if (aheadMs > 5) {
        socket.pause();
        setTimeout(() => {
          if (!isStalled) socket.resume();
        }, aheadMs).unref();
      }
    }
  });
  socket.on('end', () => {
    if (bytes === size) return finish('end', { isComplete: true });
    // Early EOF. libuv reports a reset as EOF when the RST comes with the last data (POLLHUP after a
    // partial read), so ask the kernel: a write on a reset socket fails (EPIPE/ECONNRESET) at once,
    // on a socket the peer only half-closed with FIN it succeeds.
    isEofSeen = true;
    socket.write('\n');
    setTimeout(() => finish('end', { isComplete: false }), 1_000);
  });
  socket.on('error', (err) => finish('error', { code: err.code ?? 'ERROR', message: err.message, seenAs: isEofSeen ? 'eof' : 'error' }));
  // a close without 'end' or 'error' first (should not happen): give a pending error its chance
  socket.on('close', () => setTimeout(() => finish('end', { isComplete: bytes === size }), 1_000));
  const progressMs = opts['progress-ms'] ?? 250;
  const ticker = setInterval(() => {
    if (!isStalled) emit('progress', { bytes, isPrefixOk, ms: ms() });
    if (opts['idle-ms'] !== undefined && !isStalled && performance.now() - lastDataAt > opts['idle-ms']) finish('idle');
  }, progressMs);
  onStdin({
    resume: () => {
      isStalled = false;
      lastDataAt = performance.now();
      socket.resume();
    },
    stop: () => finish('stopped'),
  });
}

// ---- probe ------------------------------------------------------------------------------------

function probe(host, port, seed, size, intervalMs) {
  const want = generator(seed)(size);
  let isStopped = false;
  const once = () => {
    if (isStopped) return;
    const start = performance.now();
    const socket = connect({ host, port, noDelay: true });
    const parts = [];
    let isDone = false;
    const done = (ok, code) => {
      if (isDone) return;
      isDone = true;
      clearTimeout(timer);
      socket.destroy();
      if (ok) emit('probe-ok', { ms: Math.round(performance.now() - start) });
      else emit('probe-fail', { code });
      setTimeout(once, intervalMs);
    };
    const timer = setTimeout(() => done(false, 'TIMEOUT'), 5_000);
    socket.on('connect', () => socket.write(`GEN ${seed} ${size}\n`));
    socket.on('data', (chunk) => parts.push(chunk));
    socket.on('end', () => done(Buffer.concat(parts).equals(want), 'SHORT_OR_WRONG'));
    socket.on('error', (err) => done(false, err.code ?? 'ERROR'));
    socket.on('close', () => done(false, 'CLOSED'));
  };
  once();
  onStdin({
    stop: () => {
      isStopped = true;
      process.exit(0);
    },
  });
}

// ---- echo: concurrent and rate ----------------------------------------------------------------

/** One echo exchange: connect, send `payload`, read it back. Resolves with an error code or null. */
function echoOnce(host, port, payload, { holdUntil } = {}) {
  return new Promise((resolve) => {
    const socket = connect({ host, port, noDelay: true });
    const parts = [];
    let got = 0;
    let isSettled = false;
    let isEchoed = false;
    const settle = (code) => {
      if (isSettled) return;
      isSettled = true;
      clearTimeout(timer);
      resolve({ code, socket });
    };
    const timer = setTimeout(() => {
      settle('TIMEOUT');
      socket.destroy();
    }, CONN_DEADLINE_MS);
    socket.on('connect', () => socket.write(Buffer.concat([Buffer.from('ECHO\n'), payload])));
    socket.on('data', (chunk) => {
      parts.push(chunk);
      got += chunk.length;
      if (got > payload.length) settle('TOO_MUCH');
      else if (got === payload.length && !isEchoed) {
        isEchoed = true;
        if (!Buffer.concat(parts).equals(payload)) settle('CORRUPT');
        else if (holdUntil === undefined) socket.end();
        else {
          holdUntil.then(() => socket.end());
          settle(null);
        }
      }
    });
    socket.on('error', (err) => settle(err.code ?? 'ERROR'));
    socket.on('close', () => settle(isEchoed ? null : 'CLOSED_EARLY'));
  });
}

async function concurrent(host, port, count, size) {
  const start = performance.now();
  let release;
  const holdUntil = new Promise((r) => (release = r));
  const results = await Promise.all(Array.from({ length: count }, () => echoOnce(host, port, randomBytes(size), { holdUntil })));
  const errors = {};
  for (const { code } of results) if (code !== null) errors[code] = (errors[code] ?? 0) + 1;
  const opened = results.filter((r) => r.code === null).length;
  emit('all-echoed', { ms: Math.round(performance.now() - start), opened, errors });
  await new Promise((resolve) => onStdin({ close: resolve, stop: resolve }));
  // a connection the mesh cut while all of them were held open is a failure too
  const died = results.filter((r) => r.code === null && r.socket.destroyed).length;
  if (died > 0) errors.DIED_WHILE_HELD = died;
  const closes = results.map(
    ({ socket }) =>
      new Promise((resolve) => {
        if (socket.destroyed) return resolve(undefined);
        const t = setTimeout(() => {
          socket.destroy();
          resolve('CLOSE_TIMEOUT');
        }, 15_000);
        socket.on('close', () => {
          clearTimeout(t);
          resolve(undefined);
        });
      }),
  );
  release();
  for (const code of await Promise.all(closes)) if (code !== undefined) errors[code] = (errors[code] ?? 0) + 1;
  emit('summary', { ok: opened - died, failed: count - opened + died, errors });
  process.exit(0);
}

/** Client half-close: the request ends with our FIN, the answer must still arrive in full. */
function halfCloseOnce(host, port, payload) {
  return new Promise((resolve) => {
    const socket = connect({ host, port, noDelay: true, allowHalfOpen: true });
    const parts = [];
    let isSettled = false;
    const settle = (code) => {
      if (isSettled) return;
      isSettled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(code);
    };
    const timer = setTimeout(() => settle('TIMEOUT'), CONN_DEADLINE_MS);
    socket.on('connect', () => socket.end(Buffer.concat([Buffer.from('ECHO\n'), payload])));
    socket.on('data', (chunk) => parts.push(chunk));
    socket.on('end', () => settle(Buffer.concat(parts).equals(payload) ? null : 'SHORT_OR_WRONG'));
    socket.on('error', (err) => settle(err.code ?? 'ERROR'));
    socket.on('close', () => settle('CLOSED_EARLY'));
  });
}

async function halfClose(host, port, count, size) {
  const errors = {};
  let ok = 0;
  for (let i = 0; i < count; i++) {
    const code = await halfCloseOnce(host, port, randomBytes(size));
    if (code === null) ok++;
    else errors[code] = (errors[code] ?? 0) + 1;
  }
  emit('summary', { ok, failed: count - ok, errors });
  process.exit(0);
}

async function rate(host, port, perSecond, seconds, size) {
  const total = perSecond * seconds;
  const start = performance.now();
  const latencies = [];
  const errors = {};
  let open = 0;
  let maxOpen = 0;
  let ok = 0;
  const running = [];
  for (let i = 0; i < total; i++) {
    // schedule by the clock, not by sleeping a fixed step: a slow tick must not lower the rate
    const dueMs = (i * 1000) / perSecond - (performance.now() - start);
    if (dueMs > 0) await new Promise((r) => setTimeout(r, dueMs));
    const t0 = performance.now();
    open++;
    maxOpen = Math.max(maxOpen, open);
    running.push(
      echoOnce(host, port, randomBytes(size)).then(({ code }) => {
        open--;
        if (code === null) {
          ok++;
          latencies.push(performance.now() - t0);
        } else errors[code] = (errors[code] ?? 0) + 1;
      }),
    );
  }
  const sendMs = performance.now() - start;
  await Promise.all(running);
  latencies.sort((x, y) => x - y);
  const pct = (p) => (latencies.length === 0 ? null : Math.round(latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] * 10) / 10);
  emit('summary', {
    started: total,
    ok,
    failed: total - ok,
    errors,
    achievedPerSecond: Math.round((total / sendMs) * 1000 * 10) / 10,
    p50Ms: pct(50),
    p99Ms: pct(99),
    maxMs: pct(100),
    maxOpen,
  });
  process.exit(0);
}

// ---- main -------------------------------------------------------------------------------------

const [mode, host, portText, ...rest] = process.argv.slice(2);
if (host === undefined || portText === undefined) usage('expected MODE HOST PORT ...');
const port = int(portText, 'port', 1);
switch (mode) {
  case 'server':
    serve(host, port);
    break;
  case 'download':
    download(host, port, rest[0] ?? usage('download: SEED missing'), int(rest[1], 'BYTES'), options(rest.slice(2)));
    break;
  case 'probe':
    probe(host, port, rest[0] ?? usage('probe: SEED missing'), int(rest[1], 'BYTES'), int(rest[2], 'INTERVAL_MS', 1));
    break;
  case 'concurrent':
    await concurrent(host, port, int(rest[0], 'COUNT', 1), int(rest[1], 'BYTES', 1));
    break;
  case 'halfclose':
    await halfClose(host, port, int(rest[0], 'COUNT', 1), int(rest[1], 'BYTES', 1));
    break;
  case 'rate':
    await rate(host, port, int(rest[0], 'PER_SECOND', 1), int(rest[1], 'SECONDS', 1), int(rest[2], 'BYTES', 1));
    break;
  default:
    usage(`unknown mode '${mode}' (server, download, probe, concurrent, halfclose, rate)`);
}
