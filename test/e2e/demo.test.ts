import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The demo runs real agents on loopback only, so unlike the namespace suites it needs no root.
const DEMO_JS = fileURLToPath(new URL('../../dist/demo/demo.js', import.meta.url));
const DEMO_TIMEOUT_MS = 90_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Command lines of running processes that mention `needle` (Linux /proc; empty elsewhere). */
function processesMentioning(needle: string): string[] {
  if (!existsSync('/proc/self/cmdline')) return [];
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmdline.includes(needle)) found.push(`${pid}: ${cmdline}`);
    } catch {
      // the process ended while we looked
    }
  }
  return found;
}

function runDemo(): Promise<Run> {
  return new Promise((done) => {
    const child = execFile(process.execPath, [DEMO_JS], { timeout: DEMO_TIMEOUT_MS, killSignal: 'SIGTERM', maxBuffer: 8 * 1024 * 1024 }, (err, stdout, stderr) => {
      done({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : child.exitCode, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

describe('npm run demo', () => {
  it(
    'joins three agents, reaches hello on beta through gamma\'s DNS and VIP, and cleans up',
    async () => {
      expect(existsSync(DEMO_JS), `${DEMO_JS} is missing: run \`npm run build\` first`).toBe(true);
      const run = await runDemo();
      const context = `exit ${run.code}\n--- stdout ---\n${run.stdout}\n--- stderr ---\n${run.stderr}`;
      expect(run.code, context).toBe(0);
      expect(run.stdout, context).toContain('hello from beta through the mesh');
      // the answer came from gamma's DNS, i.e. a VIP in gamma's own range
      expect(run.stdout, context).toMatch(/gamma's DNS answered 127\.73\.\d{1,3}\.\d{1,3}/);
      // the token is a secret: the demo never prints it
      expect(run.stdout + run.stderr).not.toMatch(/osmt1_/);
      // its temp dir (state, keys, token, logs) is gone once it has exited
      const demoDir = /DEMO_DIR=(\S+) /.exec(run.stdout)?.[1];
      expect(demoDir, context).toBeDefined();
      expect(existsSync(demoDir ?? ''), `${demoDir} was left behind`).toBe(false);
      // and no agent it started is still running
      expect(processesMentioning(`${demoDir}/`)).toEqual([]);
    },
    DEMO_TIMEOUT_MS + 10_000,
  );
});
