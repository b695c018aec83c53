import { readFileSync, statSync } from 'node:fs';
import { ErrorCodes, MeshError } from '../errors.js';
import { writeFileAtomicRaw } from '../util/atomic-file.js';
import { compareText } from '../util/compare.js';

/**
 * Hosts-file mode (SPEC §2 names): for systems that keep their own resolver, the agent writes its
 * names into a marked block of a hosts file (normally /etc/hosts) and removes the block when it
 * stops. Lines outside the block are never touched.
 */

export const HOSTS_BEGIN = '# BEGIN osmoda-mesh (written by the agent; edits inside this block are lost)';
export const HOSTS_END = '# END osmoda-mesh';

export interface HostsEntry {
  name: string;
  address: string;
}

/** The block for these entries: `address  name  name.domain`, sorted by name; '' for none. */
export function renderHostsBlock(entries: readonly HostsEntry[], domain: string): string {
  if (entries.length === 0) return '';
  const lines = [...entries]
    .sort((a, b) => compareText(a.name, b.name))
    .map((e) => `${e.address}\t${e.name} ${e.name}.${domain}`);
  return [HOSTS_BEGIN, ...lines, HOSTS_END].join('\n') + '\n';
}

/**
 * Replaces the marked block in `text` (or appends it; or removes it when `block` is ''). A block
 * whose END marker is missing (a hand edit cut it) ends at the end of the file.
 */
export function mergeHostsBlock(text: string, block: string): string {
  const lines = text.split('\n');
  const begin = lines.indexOf(HOSTS_BEGIN);
  let kept: string[];
  if (begin === -1) {
    kept = lines;
  } else {
    const endAt = lines.indexOf(HOSTS_END, begin + 1);
    // without an END marker the block runs to the end of the file, which still ends in a newline
    kept = [...lines.slice(0, begin), ...(endAt === -1 ? [''] : lines.slice(endAt + 1))];
  }
  let body = kept.join('\n');
  if (block === '') return body;
  if (body.length > 0 && !body.endsWith('\n')) body += '\n';
  return body + block;
}

/** Keeps the block in one hosts file current; writes only when its content changes. */
export class HostsFileWriter {
  readonly path: string;
  readonly #domain: string;
  #lastBlock: string | undefined;

  constructor(path: string, domain: string) {
    this.path = path;
    this.#domain = domain;
  }

  update(entries: readonly HostsEntry[]): void {
    const block = renderHostsBlock(entries, this.#domain);
    if (block === this.#lastBlock) return;
    this.#write(block);
    this.#lastBlock = block;
  }

  /** Removes the block (agent stopping). */
  remove(): void {
    if (this.#lastBlock === '') return;
    this.#write('');
    this.#lastBlock = '';
  }

  #write(block: string): void {
    let text = '';
    let mode = 0o644;
    try {
      text = readFileSync(this.path, 'utf8');
      mode = statSync(this.path).mode & 0o777;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new MeshError(ErrorCodes.INVALID_CONFIG, `hosts file ${this.path}: ${(err as Error).message}`, { cause: err });
      }
    }
    const next = mergeHostsBlock(text, block);
    if (next === text) return;
    try {
      // a rename keeps readers from ever seeing half a hosts file
      writeFileAtomicRaw(this.path, next, mode);
    } catch (err) {
      throw new MeshError(ErrorCodes.INVALID_CONFIG, `cannot write hosts file ${this.path}: ${(err as Error).message} (the agent needs write access to it and its directory)`, { cause: err });
    }
  }
}
