// The attacker of test/integration/abuse.test.ts, in its own process so that its own CPU is not
// charged to the agents' event loop. Node builtins only (raw TCP, hand-written HTTP and WebSocket
// frames). Usage: node attacker.mjs '<json>' with {host, port, path, modes, durationMs,
// floodPerSecond, addresses: {flood, garbage, garbageWs, slowHeader, slowUpgrade, hugeFrame}}.
// The continuous modes (flood, garbage, garbageWs) run until durationMs passes or `stop` arrives on
// stdin; `pause` and `resume` on stdin suspend them (the test interleaves windows with and without
// abuse). Prints one JSON summary line on stdout once every connection it opened has been closed
// by the agent (or `giveUpMs` passed).
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';

const opts = JSON.parse(process.argv[2]);
const { host, port, path, durationMs, floodPerSecond, addresses } = opts;
const giveUpMs = opts.giveUpMs ?? 20_000;
const started = performance.now();
const open = new Set();
const summary = {
  flood: { attempts: 0, statuses: {} },
  garbage: { connections: 0, answered400: 0, closeMs: [] },
  garbageWs: { connections: 0, upgraded: 0, closeMs: [], closeCodes: {} },
  slowHeader: { connections: 0, closeMs: [] },
  slowUpgrade: { connections: 0, upgraded: 0, closeFrameMs: [], closeMs: [], closeCodes: {} },
  hugeFrame: { connections: 0, upgraded: 0, closeMs: [], closeCodes: {} },
  stillOpen: 0,
};

const upgradeRequest = () =>
  `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
  `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`;

/** Opens one raw connection; `onData(all, socket)` sees everything received so far. */
function raw(localAddress, onConnect, onData, onClose) {
  const t0 = performance.now();
  const socket = connect({ host, port, localAddress });
  open.add(socket);
  let received = Buffer.alloc(0);
  socket.on('connect', () => onConnect(socket));
  socket.on('data', (d) => {
    received = Buffer.concat([received, d]);
    onData?.(received, socket);
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    open.delete(socket);
    onClose?.(performance.now() - t0, received);
  });
  return socket;
}

/** The close code in the first WebSocket close frame after the 101 answer, if any. */
function wsCloseCode(received) {
  const end = received.indexOf('\r\n\r\n');
  if (end < 0) return 'no-upgrade';
  const frames = received.subarray(end + 4);
  if (frames.length >= 4 && frames[0] === 0x88) return String(frames.readUInt16BE(2));
  return frames.length === 0 ? 'closed-without-frame' : `other-${frames[0]}`;
}

const count = (obj, key) => (obj[key] = (obj[key] ?? 0) + 1);

// 1. flood: floodPerSecond upgrade attempts from one address; each is dropped once answered
function floodTick() {
  for (let i = 0; i < floodPerSecond / 20; i++) {
    summary.flood.attempts++;
    let status;
    raw(
      addresses.flood,
      (s) => s.write(upgradeRequest()),
      (all, s) => {
        const eol = all.indexOf('\r\n');
        if (eol >= 0 && status === undefined) {
          status = all.subarray(0, eol).toString('latin1');
          s.destroy();
        }
      },
      () => count(summary.flood.statuses, status ?? '(closed)'),
    );
  }
}

// 2. 64 KiB of random bytes on a plain connection, 10 per second
function garbageTick() {
  summary.garbage.connections++;
  const junk = randomBytes(64 * 1024);
  junk[0] = 0;
  raw(
    addresses.garbage,
    (s) => s.write(junk),
    undefined,
    (ms, all) => {
      summary.garbage.closeMs.push(Math.round(ms));
      if (all.toString('latin1').startsWith('HTTP/1.1 400')) summary.garbage.answered400++;
    },
  );
}

// 3. a valid upgrade, then 4 KiB of random bytes where WebSocket frames should be, 10 per second
function garbageWsTick() {
  summary.garbageWs.connections++;
  let sent = false;
  raw(
    addresses.garbageWs,
    (s) => s.write(upgradeRequest()),
    (all, s) => {
      if (!sent && all.indexOf('\r\n\r\n') >= 0) {
        sent = true;
        summary.garbageWs.upgraded++;
        s.write(randomBytes(4096));
      }
    },
    (ms, all) => {
      summary.garbageWs.closeMs.push(Math.round(ms));
      count(summary.garbageWs.closeCodes, wsCloseCode(all));
    },
  );
}

// 4. Slowloris: half an HTTP header, then silence
function slowHeader(n) {
  for (let i = 0; i < n; i++) {
    summary.slowHeader.connections++;
    raw(addresses.slowHeader, (s) => s.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\n`), undefined, (ms) => summary.slowHeader.closeMs.push(Math.round(ms)));
  }
}

// 5. Slowloris after the upgrade: a WebSocket that never sends Noise message 1
function slowUpgrade(n) {
  for (let i = 0; i < n; i++) {
    summary.slowUpgrade.connections++;
    let seen = false;
    let hasCloseFrame = false;
    const t0 = performance.now();
    raw(
      addresses.slowUpgrade,
      (s) => s.write(upgradeRequest()),
      (all) => {
        if (!seen && all.toString('latin1').startsWith('HTTP/1.1 101')) {
          seen = true;
          summary.slowUpgrade.upgraded++;
        }
        const end = all.indexOf('\r\n\r\n');
        if (!hasCloseFrame && end >= 0 && all[end + 4] === 0x88) {
          // the agent's close frame: it gives up on the handshake here, and cuts the socket after
          // the usual grace for the peer's answering close frame
          hasCloseFrame = true;
          summary.slowUpgrade.closeFrameMs.push(Math.round(performance.now() - t0));
        }
      },
      (ms, all) => {
        summary.slowUpgrade.closeMs.push(Math.round(ms));
        count(summary.slowUpgrade.closeCodes, wsCloseCode(all));
      },
    );
  }
}

// 6. a WebSocket frame header claiming a 10 GiB payload (masked, as a client must)
function hugeFrame(n) {
  const header = Buffer.alloc(14);
  header[0] = 0x82; // FIN + binary
  header[1] = 0x80 | 127; // masked, 64-bit length follows
  header.writeBigUInt64BE(10n * 2n ** 30n, 2);
  randomBytes(4).copy(header, 10);
  for (let i = 0; i < n; i++) {
    summary.hugeFrame.connections++;
    let sent = false;
    raw(
      addresses.hugeFrame,
      (s) => s.write(upgradeRequest()),
      (all, s) => {
        if (!sent && all.indexOf('\r\n\r\n') >= 0) {
          sent = true;
          summary.hugeFrame.upgraded++;
          s.write(Buffer.concat([header, randomBytes(1024)]));
        }
      },
      (ms, all) => {
        summary.hugeFrame.closeMs.push(Math.round(ms));
        count(summary.hugeFrame.closeCodes, wsCloseCode(all));
      },
    );
  }
}

const modes = new Set(opts.modes ?? ['flood', 'garbage', 'garbageWs', 'slowHeader', 'slowUpgrade', 'hugeFrame']);
if (modes.has('slowHeader')) slowHeader(opts.slowConnections ?? 8);
if (modes.has('slowUpgrade')) slowUpgrade(opts.slowConnections ?? 8);
if (modes.has('hugeFrame')) hugeFrame(4);
let ticks = [];
function resume() {
  if (ticks.length > 0) return;
  if (modes.has('flood')) ticks.push(setInterval(floodTick, 50));
  if (modes.has('garbage')) ticks.push(setInterval(garbageTick, 100));
  if (modes.has('garbageWs')) ticks.push(setInterval(garbageWsTick, 100));
}
function pause() {
  for (const t of ticks) clearInterval(t);
  ticks = [];
}
let isStopping = false;
function stop() {
  if (isStopping) return;
  isStopping = true;
  pause();
  const waitForClose = setInterval(() => {
    if (open.size === 0 || performance.now() - started > giveUpMs) {
      clearInterval(waitForClose);
      summary.stillOpen = open.size;
      summary.elapsedMs = Math.round(performance.now() - started);
      for (const s of open) s.destroy();
      process.stdout.write(JSON.stringify(summary) + '\n', () => process.exit(0));
    }
  }, 50);
}
if (!opts.startPaused) resume();
if (opts.durationMs !== undefined) setTimeout(stop, opts.durationMs);
process.stdin.setEncoding('utf8');
process.stdin.on('data', (text) => {
  for (const command of text.split('\n')) {
    if (command === 'pause') pause();
    else if (command === 'resume') resume();
    else if (command === 'stop') stop();
  }
});
process.stdin.on('end', stop);
