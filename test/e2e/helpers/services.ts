/**
 * Real servers started inside a host namespace of a `Topology`. Each lives in a temp dir named
 * `osmt-<pid>-…` (so `sweepStale` reclaims it after a crash) and its process is spawned through the
 * topology, so `destroy()` kills it even when a test forgets `stop()`.
 */
import { execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, MeshError } from '../../../src/errors.js';
import { findPostgresBinDir, NAME_PREFIX, TMP_ROOT } from './netns.js';
import type { Topology } from './netns.js';

export interface ServiceHandle {
  readonly host: string;
  readonly port: number;
  /** Stops the server and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
}

export interface DirServiceHandle extends ServiceHandle {
  readonly dir: string;
}

export interface StartOptions {
  port: number;
  /** Address to listen on inside the namespace; default 127.0.0.1 (the agent forwards to it). */
  bind?: string;
  /** Bound on the readiness wait; default 20 000 ms. */
  readyTimeoutMs?: number;
}

export interface BlobServerOptions {
  port: number;
  sizeBytes: number;
  seed: number | string;
  /** Default 0.0.0.0 so other hosts can fetch it directly by the host's 10.x address. */
  bind?: string;
  readyTimeoutMs?: number;
}

export interface BlobServerHandle extends ServiceHandle {
  readonly sizeBytes: number;
  readonly seed: string;
}

export interface FetchResult {
  sha256: string;
  bytes: number;
  ms: number;
}

const POLL_INTERVAL_MS = 100;
const OUTPUT_TAIL_BYTES = 8 * 1024;
const HELPERS_DIR = fileURLToPath(new URL('.', import.meta.url));

function checkPort(field: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${field}: expected an integer 1..65535, got ${port}`);
  }
}

function makeTempDir(label: string): string {
  return mkdtempSync(join(TMP_ROOT, `${NAME_PREFIX}${process.pid}-${label}-`));
}

/** Keeps the last few KiB a child printed, for the error message when it fails to come up. */
function captureTail(child: ChildProcess): () => string {
  let tail = '';
  const keep = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('utf8')).slice(-OUTPUT_TAIL_BYTES);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => tail;
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Polls `probe` every 100 ms until it returns true, the child dies, or `timeoutMs` passes. */
async function waitReady(
  what: string,
  child: ChildProcess,
  output: () => string,
  timeoutMs: number,
  probe: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const maxAttempts = Math.ceil(timeoutMs / POLL_INTERVAL_MS) + 1;
  for (let attempt = 0; attempt < maxAttempts && Date.now() < deadline; attempt++) {
    if (hasExited(child)) {
      throw new MeshError(
        ErrorCodes.INTERNAL,
        `${what}: exited (code ${child.exitCode ?? child.signalCode}) before it was ready; output: ${output().trim()}`,
      );
    }
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS));
  }
  throw new MeshError(
    ErrorCodes.INTERNAL,
    `${what}: not ready after ${timeoutMs} ms; output: ${output().trim()}`,
  );
}

function onceOnly(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= fn());
}

export async function startRedis(topo: Topology, host: string, opts: StartOptions): Promise<DirServiceHandle> {
  checkPort('startRedis port', opts.port);
  const bind = opts.bind ?? '127.0.0.1';
  const dir = makeTempDir(`redis-${host}`);
  const child = topo.spawn(
    host,
    'redis-server',
    ['--port', String(opts.port), '--bind', bind, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir],
    { cwd: dir },
  );
  const output = captureTail(child);
  const stop = onceOnly(async () => {
    await topo.kill(child);
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    await waitReady(`redis-server in ${host} on ${bind}:${opts.port}`, child, output, opts.readyTimeoutMs ?? 20_000, async () => {
      const r = await topo.exec(host, 'redis-cli', ['-h', bind, '-p', String(opts.port), 'ping'], { timeoutMs: 2_000 });
      return r.code === 0 && r.stdout.trim() === 'PONG';
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { host, port: opts.port, dir, stop };
}

export async function startPostgres(topo: Topology, host: string, opts: StartOptions): Promise<DirServiceHandle> {
  checkPort('startPostgres port', opts.port);
  const bin = findPostgresBinDir();
  if (bin === undefined) {
    throw new MeshError(ErrorCodes.INTERNAL, 'startPostgres: expected /usr/lib/postgresql/<version>/bin/postgres, found none');
  }
  const bind = opts.bind ?? '127.0.0.1';
  const dir = makeTempDir(`pg-${host}`);
  const dataDir = join(dir, 'data');
  // postgres refuses to run as root, and Debian's package creates this user.
  const pg = 'postgres';
  let child: ChildProcess | undefined;
  const stop = onceOnly(async () => {
    if (child !== undefined && !hasExited(child)) {
      // Immediate: the data is throwaway, and a clean checkpoint only slows teardown.
      await topo.exec(host, 'runuser', ['-u', pg, '--', join(bin, 'pg_ctl'), 'stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '10'], {
        timeoutMs: 15_000,
        cwd: dir,
      });
      await topo.kill(child);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    const uid = Number(execFileSync('id', ['-u', pg], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', pg], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
    await topo.execOk(
      host,
      'runuser',
      ['-u', pg, '--', join(bin, 'initdb'), '-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync', '--no-instructions'],
      { timeoutMs: 60_000, cwd: dir },
    );
    child = topo.spawn(
      host,
      'runuser',
      [
        '-u', pg, '--', join(bin, 'postgres'),
        '-D', dataDir,
        '-p', String(opts.port),
        '-c', `listen_addresses=${bind}`,
        '-c', `unix_socket_directories=${dir}`,
        '-c', 'fsync=off',
        '-c', 'logging_collector=off',
      ],
      { cwd: dir },
    );
    const started = child;
    const output = captureTail(started);
    await waitReady(`postgres in ${host} on ${bind}:${opts.port}`, started, output, opts.readyTimeoutMs ?? 20_000, async () => {
      const r = await topo.exec(host, 'pg_isready', ['-h', bind, '-p', String(opts.port), '-U', 'postgres'], { timeoutMs: 2_000 });
      return r.code === 0;
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { host, port: opts.port, dir, stop };
}

const BLOB_CHUNK = 64 * 1024;

/** sha256 (hex) of the stream blob-server.mjs sends for (sizeBytes, seed); keep the two in step. */
export function expectedSha256(sizeBytes: number, seed: number | string): string {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `expectedSha256 sizeBytes: expected an integer >= 0, got ${sizeBytes}`);
  }
  const key = createHash('sha256').update(`osmt-blob-v1:${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(BLOB_CHUNK);
  const hash = createHash('sha256');
  for (let left = sizeBytes; left > 0; left -= BLOB_CHUNK) {
    hash.update(cipher.update(left >= BLOB_CHUNK ? zeros : zeros.subarray(0, left)));
  }
  return hash.digest('hex');
}

export async function startBlobServer(topo: Topology, host: string, opts: BlobServerOptions): Promise<BlobServerHandle> {
  checkPort('startBlobServer port', opts.port);
  if (!Number.isSafeInteger(opts.sizeBytes) || opts.sizeBytes < 0) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `startBlobServer sizeBytes: expected an integer >= 0, got ${opts.sizeBytes}`);
  }
  const bind = opts.bind ?? '0.0.0.0';
  const seed = String(opts.seed);
  const child = topo.spawn(host, process.execPath, [
    join(HELPERS_DIR, 'blob-server.mjs'),
    bind,
    String(opts.port),
    String(opts.sizeBytes),
    seed,
  ]);
  const output = captureTail(child);
  const stop = onceOnly(() => topo.kill(child));
  try {
    await waitReady(`blob server in ${host} on ${bind}:${opts.port}`, child, output, opts.readyTimeoutMs ?? 10_000, async () =>
      output().includes(`listening ${bind}:${opts.port}`),
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { host, port: opts.port, sizeBytes: opts.sizeBytes, seed, stop };
}

/** Connects from inside `host` to addr:port, reads until the server closes, and reports what arrived. */
export async function fetchBlob(
  topo: Topology,
  host: string,
  addr: string,
  port: number,
  opts: { timeoutMs?: number } = {},
): Promise<FetchResult> {
  checkPort('fetchBlob port', port);
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const r = await topo.execOk(host, process.execPath, [join(HELPERS_DIR, 'blob-client.mjs'), addr, String(port), String(timeoutMs)], {
    timeoutMs: timeoutMs + 5_000,
  });
  const parsed = JSON.parse(r.stdout) as Partial<FetchResult>;
  if (typeof parsed.sha256 !== 'string' || typeof parsed.bytes !== 'number' || typeof parsed.ms !== 'number') {
    throw new MeshError(ErrorCodes.INTERNAL, `fetchBlob: expected {sha256, bytes, ms} from blob-client, got ${r.stdout.slice(0, 200)}`);
  }
  return { sha256: parsed.sha256, bytes: parsed.bytes, ms: parsed.ms };
}
