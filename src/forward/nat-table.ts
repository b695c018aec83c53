import { spawn } from 'node:child_process';
import { ErrorCodes, MeshError } from '../errors.js';
import { compareText } from '../util/compare.js';

/**
 * nat mode (SPEC §4a): the agent listens on 127.0.0.1 ports of its own choosing, and an nftables
 * output-chain DNAT sends VIP:port there. Compose gave every container its own network namespace;
 * on one host a listener on 127.77.0.5:5432 and a local server on 0.0.0.0:5432 exclude each other
 * (bind mode's clash). With DNAT nothing listens on the VIP, so nothing clashes.
 *
 * The rules live in a table of the agent's own, replaced as a whole in one `nft -f` transaction
 * (nft applies a file atomically), and deleted on exit. A table left by a killed agent is simply
 * replaced at the next start. Needs CAP_NET_ADMIN and the `nft` command (package nftables).
 */

export interface NatRule {
  vip: string;
  port: number;
  /** The 127.0.0.1 port the agent listens on for this VIP:port. */
  localPort: number;
}

export interface NatTableInit {
  /** nftables table name (family ip); one per agent on a host. */
  table: string;
  /** The nft command; default `nft` from PATH. */
  nftCommand?: string;
  /** Upper bound for one nft run. */
  timeoutMs?: number;
}

export const DEFAULT_NAT_TABLE = 'osmoda_mesh';
const TABLE_NAME = /^[a-z][a-z0-9_]{0,31}$/;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** The nft script that makes the table hold exactly `rules` (pure; tested on its own). */
export function natScript(table: string, rules: readonly NatRule[]): string {
  if (!TABLE_NAME.test(table)) throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `nat table: expected a name of a-z, 0-9 and _, got '${table}'`);
  const lines = [
    // "add" first so the delete cannot fail on a missing table; all in one transaction
    `add table ip ${table}`,
    `delete table ip ${table}`,
    `table ip ${table} {`,
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
  ];
  const sorted = [...rules].sort((a, b) => compareText(a.vip, b.vip) || a.port - b.port);
  for (const r of sorted) {
    if (!IPV4.test(r.vip) || !isPort(r.port) || !isPort(r.localPort)) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `nat rule: expected IPv4 VIP and ports, got ${JSON.stringify(r)}`);
    }
    lines.push(`    ip daddr ${r.vip} tcp dport ${r.port} dnat to 127.0.0.1:${r.localPort}`);
  }
  lines.push('  }', '}', '');
  return lines.join('\n');
}

function isPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

export class NatTable {
  readonly #table: string;
  readonly #nft: string;
  readonly #timeoutMs: number;
  /** Runs are serialized: a later rule set must never be overtaken by an earlier one. */
  #queue: Promise<void> = Promise.resolve();
  #isInstalled = false;

  constructor(init: NatTableInit) {
    this.#table = init.table;
    this.#nft = init.nftCommand ?? 'nft';
    this.#timeoutMs = init.timeoutMs ?? 10_000;
    natScript(this.#table, []); // validates the name now, not at the first apply
  }

  get table(): string {
    return this.#table;
  }

  /** Replaces the table's rules with `rules`. Rejects with MESH_ERR_NAT_SETUP naming the fix. */
  apply(rules: readonly NatRule[]): Promise<void> {
    const script = natScript(this.#table, rules);
    return this.#enqueue(async () => {
      await this.#run(['-f', '-'], script);
      this.#isInstalled = true;
    });
  }

  /** Deletes the table (agent stopping). Idempotent; a table already gone is not an error. */
  remove(): Promise<void> {
    return this.#enqueue(async () => {
      if (!this.#isInstalled) return;
      this.#isInstalled = false;
      await this.#run(['-f', '-'], `add table ip ${this.#table}\ndelete table ip ${this.#table}\n`);
    });
  }

  #enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(task);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #run(args: string[], input: string): Promise<void> {
    return new Promise((resolve, reject) => {
      let stderr = '';
      let isSettled = false;
      const settle = (err?: MeshError): void => {
        if (isSettled) return;
        isSettled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      const child = spawn(this.#nft, args, { stdio: ['pipe', 'ignore', 'pipe'] });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        settle(new MeshError(ErrorCodes.NAT_SETUP, `nat mode: ${this.#nft} did not finish within ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
      timer.unref();
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => {
        if (stderr.length < 4096) stderr += chunk;
      });
      child.on('error', (err: NodeJS.ErrnoException) => {
        const hint = err.code === 'ENOENT' ? 'install nftables (the nft command) or set forwardMode to bind' : err.message;
        settle(new MeshError(ErrorCodes.NAT_SETUP, `nat mode: cannot run ${this.#nft}: ${hint}`, { cause: err }));
      });
      child.on('close', (code) => {
        if (code === 0) return settle();
        const detail = stderr.trim().split('\n')[0] ?? '';
        const hint = /permission|not permitted/i.test(stderr)
          ? ' (the agent needs CAP_NET_ADMIN for nat mode; or set forwardMode to bind)'
          : '';
        settle(new MeshError(ErrorCodes.NAT_SETUP, `nat mode: nft exited with status ${code}: ${detail || 'no message'}${hint}`));
      });
      child.stdin.on('error', () => undefined); // nft died first: its exit status says why
      child.stdin.end(input);
    });
  }
}
