/**
 * Typed handles on traffic.mjs processes run inside the namespaces of a Topology (servers,
 * verifying downloads, probes, echo storms), plus /proc readings of the agents (RSS, open fds).
 * Every wait is bounded by time; every process is spawned through the topology, so destroy()
 * reaches it even when a test forgets stop().
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Topology } from './netns.js';

const SCRIPT = fileURLToPath(new URL('./traffic.mjs', import.meta.url));
const STDERR_TAIL_BYTES = 4 * 1024;
/** Events kept per process: progress lines arrive 4 a second, so a long run must not grow without bound. */
const MAX_EVENTS = 20_000;

export interface TrafficEvent {
  ev: string;
  [key: string]: unknown;
}

/** The last event of a download: end, error, idle or stopped. */
export interface DownloadResult extends TrafficEvent {
  bytes: number;
  isPrefixOk: boolean;
  ms: number;
  isComplete?: boolean;
  code?: string;
  /** error: 'eof' when libuv first reported the reset as an early EOF (traffic.mjs download). */
  seenAs?: string;
}

export const DOWNLOAD_FINAL = new Set(['end', 'error', 'idle', 'stopped']);

/** What a reset connection gives the client: ECONNRESET, or EPIPE for the write that proved it. */
export const RESET_CODES: readonly string[] = ['ECONNRESET', 'EPIPE'];

/** "reset (ECONNRESET)", "reset (EPIPE, first seen as an early EOF)", "end (clean FIN)"… */
export function describeCut(r: DownloadResult): string {
  if (r.ev === 'error') return `reset (${r.code ?? '?'}${r.seenAs === 'eof' ? ', first seen as an early EOF, proved by a failed write' : ''})`;
  if (r.ev === 'end') return r.isComplete === true ? 'a complete end' : 'a clean FIN before the end (silent truncation)';
  return r.ev;
}

export class TrafficProcess {
  readonly what: string;
  readonly child: ChildProcess;
  readonly events: TrafficEvent[] = [];
  readonly #topo: Topology;
  readonly #listeners = new Set<() => void>();
  #stderr = '';
  #droppedEvents = 0;

  constructor(topo: Topology, host: string, args: readonly string[]) {
    this.#topo = topo;
    this.what = `traffic ${args[0] ?? ''} in ${host}`;
    this.child = topo.spawn(host, process.execPath, [SCRIPT, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdin?.on('error', () => undefined);
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString('utf8')).slice(-STDERR_TAIL_BYTES);
    });
    if (this.child.stdout !== null) {
      createInterface({ input: this.child.stdout }).on('line', (line) => {
        let event: TrafficEvent;
        try {
          event = JSON.parse(line) as TrafficEvent;
        } catch {
          this.#stderr += `\n(unparsed stdout: ${line.slice(0, 200)})`;
          return;
        }
        this.events.push(event);
        if (this.events.length > MAX_EVENTS) {
          this.#droppedEvents += this.events.length - MAX_EVENTS;
          this.events.splice(0, this.events.length - MAX_EVENTS);
        }
        this.#notify();
      });
    }
    this.child.once('exit', () => this.#notify());
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  get hasExited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  describe(): string {
    const last = this.events.slice(-3).map((e) => JSON.stringify(e));
    const dropped = this.#droppedEvents > 0 ? ` (${this.#droppedEvents} older events dropped)` : '';
    return `${this.what}: exit ${this.child.exitCode ?? this.child.signalCode ?? 'running'}; last events${dropped}: ${last.join(' ') || 'none'}; stderr: ${this.#stderr.trim() || 'none'}`;
  }

  /** Writes one command line (resume, stop, close) to its stdin. */
  send(command: string): void {
    this.child.stdin?.write(`${command}\n`);
  }

  last(ev: string): TrafficEvent | undefined {
    for (let i = this.events.length - 1; i >= 0; i--) if (this.events[i]!.ev === ev) return this.events[i];
    return undefined;
  }

  /** Resolves with the first event (already seen or future) that matches; rejects on exit or timeout. */
  waitFor(what: string, match: (e: TrafficEvent) => boolean, timeoutMs: number): Promise<TrafficEvent> {
    return new Promise((resolve, reject) => {
      let index = 0;
      const check = (): void => {
        for (; index < this.events.length; index++) {
          const event = this.events[index]!;
          if (match(event)) return finish(() => resolve(event));
        }
        if (this.hasExited) finish(() => reject(new Error(`${what}: ${this.what} exited first; ${this.describe()}`)));
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`${what}: not seen within ${timeoutMs} ms; ${this.describe()}`))), timeoutMs);
      const finish = (settle: () => void): void => {
        clearTimeout(timer);
        this.#listeners.delete(check);
        settle();
      };
      this.#listeners.add(check);
      check();
    });
  }

  /** The final event of a download (end, error, idle, stopped). */
  async result(timeoutMs: number): Promise<DownloadResult> {
    return (await this.waitFor('download result', (e) => DOWNLOAD_FINAL.has(e.ev), timeoutMs)) as DownloadResult;
  }

  async stop(): Promise<void> {
    if (!this.hasExited) await this.#topo.kill(this.child, 1_000);
  }
}

export async function startTrafficServer(topo: Topology, host: string, port: number, bind = '127.0.0.1'): Promise<TrafficProcess> {
  const server = new TrafficProcess(topo, host, ['server', bind, String(port)]);
  try {
    await server.waitFor('traffic server listening', (e) => e.ev === 'listening', 10_000);
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

export interface DownloadOptions {
  /** Reader pace in bytes per second (the reader pauses when ahead). */
  rateBytesPerSecond?: number;
  /** Stop reading after this many bytes until send('resume'). */
  stallAfterBytes?: number;
  progressMs?: number;
  /** Give up (final event `idle`) after this long without data. */
  idleMs?: number;
}

export function startDownload(topo: Topology, host: string, addr: string, port: number, seed: string, bytes: number, opts: DownloadOptions = {}): TrafficProcess {
  const args = ['download', addr, String(port), seed, String(bytes)];
  if (opts.rateBytesPerSecond !== undefined) args.push('--rate', String(Math.round(opts.rateBytesPerSecond)));
  if (opts.stallAfterBytes !== undefined) args.push('--stall-after', String(opts.stallAfterBytes));
  if (opts.progressMs !== undefined) args.push('--progress-ms', String(opts.progressMs));
  if (opts.idleMs !== undefined) args.push('--idle-ms', String(opts.idleMs));
  return new TrafficProcess(topo, host, args);
}

/** One whole download, checked byte by byte; returns its final event. */
export async function downloadOnce(topo: Topology, host: string, addr: string, port: number, seed: string, bytes: number, timeoutMs: number): Promise<DownloadResult> {
  const p = startDownload(topo, host, addr, port, seed, bytes, { idleMs: Math.min(timeoutMs, 15_000), progressMs: 1_000 });
  try {
    return await p.result(timeoutMs);
  } finally {
    await p.stop();
  }
}

export function mbPerSecond(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

export interface ProcStats {
  rssKiB: number;
  fds: number;
}

/** VmRSS and the number of open file descriptors of a process (root can read any /proc/<pid>). */
export function procStats(pid: number): ProcStats {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (rss === null) throw new Error(`/proc/${pid}/status has no VmRSS line`);
  return { rssKiB: Number(rss[1]), fds: readdirSync(`/proc/${pid}/fd`).length };
}

export function mib(kib: number): string {
  return `${(kib / 1024).toFixed(1)} MiB`;
}
