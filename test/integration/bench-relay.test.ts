import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from './helpers.js';

/**
 * The benchmark's plain Node relay (`echo.js relay`, the "node relay" rows) must relay for real, or
 * its rows would be the floor of nothing: bytes both ways, the server's half-close passed on.
 */
const ECHO = resolve('dist/bench/echo.js');
const children: ChildProcess[] = [];

function start(args: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, [ECHO, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return new Promise((ok, fail) => {
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout!.once('data', () => ok(child));
    child.once('exit', (code) => fail(new Error(`echo.js ${args[0]} exited ${code}: ${stderr}`)));
  });
}

/** Sends `payload`, collects everything until the other side closes (or 5 s pass). */
function exchange(port: number, payload: Buffer): Promise<{ data: Buffer; wasEnded: boolean }> {
  return new Promise((ok, fail) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write(payload));
    const timer = setTimeout(() => {
      socket.destroy();
      ok({ data: Buffer.concat(chunks), wasEnded: false });
    }, 5_000);
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      if (Buffer.concat(chunks).length >= payload.length && payload.length > 1) {
        clearTimeout(timer);
        socket.destroy();
        ok({ data: Buffer.concat(chunks), wasEnded: false });
      }
    });
    socket.once('end', () => {
      clearTimeout(timer);
      ok({ data: Buffer.concat(chunks), wasEnded: true });
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      fail(err);
    });
  });
}

afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

describe('bench: the plain Node relay', () => {
  it('relays echoes and passes the one-byte server its close, in one process and in a chain', async () => {
    expect(existsSync(ECHO), 'dist/bench/echo.js (npm test builds it first)').toBe(true);
    const [echoPort, connPort, relayEcho, relayConn, chainEcho, chainConn] = await Promise.all(Array.from({ length: 6 }, () => freePort('127.0.0.1')));
    await start(['server', String(echoPort), String(connPort)]);
    await start(['relay', '127.0.0.1', '127.0.0.1', `${relayEcho}:${echoPort},${relayConn}:${connPort}`]);
    // the second relay of a chain dials the first
    await start(['relay', '127.0.0.1', '127.0.0.1', `${chainEcho}:${relayEcho},${chainConn}:${relayConn}`]);

    const payload = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i % 251));
    for (const port of [relayEcho, chainEcho]) {
      const echoed = await exchange(port, payload);
      expect(echoed.data.equals(payload)).toBe(true);
    }
    for (const port of [relayConn, chainConn]) {
      const answer = await exchange(port, Buffer.from([1]));
      expect([...answer.data]).toEqual([0x2a]);
      expect(answer.wasEnded).toBe(true);
    }
  });

  it('drops the client when the target cannot be reached', async () => {
    const [relayPort, deadPort] = await Promise.all([freePort('127.0.0.1'), freePort('127.0.0.1')]);
    await start(['relay', '127.0.0.1', '127.0.0.1', `${relayPort}:${deadPort}`]);
    const outcome = await new Promise<string>((ok) => {
      const socket = connect({ host: '127.0.0.1', port: relayPort }, () => socket.write('x'));
      const timer = setTimeout(() => ok('still open after 5 s'), 5_000);
      socket.on('error', () => undefined);
      socket.once('close', () => {
        clearTimeout(timer);
        ok('closed');
      });
    });
    expect(outcome).toBe('closed');
  });
});
