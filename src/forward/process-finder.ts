import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/**
 * Best effort: which process listens on a TCP port, for the message shown on a port clash
 * (SPEC §4a "naming the port and, where it can be found, the process"). Reads /proc; returns
 * undefined when it cannot tell (other users' processes, no /proc). Bounded by the number of
 * processes and descriptors it scans.
 */
export function findListeningProcess(port: number): string | undefined {
  try {
    const inodes = new Set<string>();
    // /proc/self/net: still visible under systemd's ProcSubset=pid, which hides /proc/net
    for (const file of ['/proc/self/net/tcp', '/proc/self/net/tcp6']) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch {
        continue;
      }
      for (const line of text.split('\n').slice(1)) {
        const cols = line.trim().split(/\s+/);
        if (cols.length < 10 || cols[3] !== '0A') continue; // 0A = LISTEN
        const localPort = parseInt(cols[1]!.split(':')[1] ?? '', 16);
        if (localPort === port) inodes.add(cols[9]!);
      }
    }
    if (inodes.size === 0) return undefined;
    let scanned = 0;
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid) || ++scanned > 4096) continue;
      let fds: string[];
      try {
        fds = readdirSync(`/proc/${pid}/fd`);
      } catch {
        continue;
      }
      for (const fd of fds.slice(0, 4096)) {
        try {
          const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
          const m = /^socket:\[(\d+)\]$/.exec(target);
          if (m && inodes.has(m[1]!)) {
            const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
            return `${comm} (pid ${pid})`;
          }
        } catch {
          // descriptor closed meanwhile
        }
      }
    }
  } catch {
    return undefined;
  }
  return undefined;
}
