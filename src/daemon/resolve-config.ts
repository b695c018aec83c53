import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { ErrorCodes, MeshError } from '../errors.js';
import { isDnsLabel, isIpv4, parseHostPort, validateConfig, type AgentConfig } from '../config/index.js';
import type { AgentCliOptions } from '../config/index.js';

/**
 * Config precedence: command-line flags, then OSMODA_MESH_* environment variables, then the
 * config file, then defaults (SPEC §2 config). The merged result is validated as a whole, so a bad
 * flag gets the same field-naming error as a bad file entry.
 */

export function defaultNodeName(): string {
  const label = (hostname().split('.')[0] ?? '').toLowerCase();
  return isDnsLabel(label) ? label : 'node';
}

export function resolveConfig(options: AgentCliOptions, env: NodeJS.ProcessEnv): AgentConfig {
  let fileConfig: Record<string, unknown> = {};
  const configPath = options.config ?? env['OSMODA_MESH_CONFIG'];
  if (configPath !== undefined) {
    let text: string;
    try {
      text = readFileSync(configPath, 'utf8');
    } catch (err) {
      throw new MeshError(ErrorCodes.INVALID_CONFIG, `config file ${configPath}: ${(err as Error).message}`, { cause: err });
    }
    try {
      fileConfig = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new MeshError(ErrorCodes.INVALID_CONFIG, `config file ${configPath}: not valid JSON (${(err as Error).message})`, { cause: err });
    }
    if (typeof fileConfig !== 'object' || fileConfig === null || Array.isArray(fileConfig)) {
      throw new MeshError(ErrorCodes.INVALID_CONFIG, `config file ${configPath}: expected a JSON object`);
    }
  }
  const merged: Record<string, unknown> = { ...fileConfig };
  // a `dns` that is not an object is left for validateConfig to name; spreading a string or an
  // array made "dns": "abc" report "dns.0: no such option"
  const fileDns = fileConfig['dns'];
  const isDnsMergeable = fileDns === undefined || fileDns === null || (typeof fileDns === 'object' && !Array.isArray(fileDns));
  const dns: Record<string, unknown> = isDnsMergeable ? { ...(fileDns as Record<string, unknown> | null | undefined) } : {};
  const pick = (flag: string | undefined, envName: string): string | undefined => flag ?? env[envName];
  const stateDir = pick(options.stateDir, 'OSMODA_MESH_STATE_DIR');
  if (stateDir !== undefined) merged['stateDir'] = stateDir;
  const listen = pick(options.listen, 'OSMODA_MESH_LISTEN');
  if (listen !== undefined) merged['listen'] = listen;
  const control = pick(options.control, 'OSMODA_MESH_CONTROL');
  if (control !== undefined) merged['control'] = control;
  const vipRange = pick(options.vipRange, 'OSMODA_MESH_VIP_RANGE');
  if (vipRange !== undefined) merged['vipRange'] = vipRange;
  const dnsListen = pick(options.dns, 'OSMODA_MESH_DNS');
  if (dnsListen !== undefined) {
    if (dnsListen === 'off') dns['enable'] = false;
    else dns['listen'] = dnsListen;
  }
  const upstreams = env['OSMODA_MESH_DNS_UPSTREAMS'];
  // "none" forwards nothing (test namespaces, air-gapped hosts)
  if (upstreams !== undefined) dns['upstreams'] = upstreams.trim() === 'none' ? [] : upstreams.split(/[\s,]+/).filter(Boolean);
  if (Object.keys(dns).length > 0 && isDnsMergeable) merged['dns'] = dns;
  const endpoints = options.publicEndpoint ?? env['OSMODA_MESH_PUBLIC_ENDPOINTS']?.split(/[\s,]+/).filter(Boolean);
  if (endpoints !== undefined && endpoints.length > 0) merged['publicEndpoints'] = endpoints;
  const hostsFile = env['OSMODA_MESH_HOSTS_FILE'];
  if (hostsFile !== undefined) merged['hostsFile'] = hostsFile === 'off' ? null : hostsFile;
  const metrics = env['OSMODA_MESH_METRICS'];
  if (metrics !== undefined) merged['metricsListen'] = metrics === 'off' ? null : metrics;
  const nodeName = env['OSMODA_MESH_NODE_NAME'];
  if (nodeName !== undefined) merged['nodeName'] = nodeName;
  const config = validateConfig(merged, defaultNodeName());
  if (config.publicEndpoints.length === 0) {
    // advertise the listen address when it is a specific, non-loopback one (SPEC §4: never
    // advertise 0.0.0.0 or 127.0.0.1 to remote peers unless told)
    const { host, port } = parseHostPort(config.listen, 'listen');
    if (isIpv4(host) && host !== '0.0.0.0' && !host.startsWith('127.')) config.publicEndpoints = [`ws://${host}:${port}`];
  }
  return config;
}

/** systemd-resolved's stub listener, and the file where resolved lists the real upstream servers. */
const RESOLVED_STUB = '127.0.0.53';
const RESOLVED_UPSTREAMS_FILE = '/run/systemd/resolve/resolv.conf';

function nameservers(path: string, readText: (path: string) => string, dnsListenHost: string): string[] {
  let text: string;
  try {
    text = readText(path);
  } catch {
    return [];
  }
  return text
    .split('\n')
    .map((line) => /^\s*nameserver\s+(\S+)/.exec(line)?.[1])
    .filter((ip): ip is string => ip !== undefined && isIpv4(ip) && ip !== dnsListenHost && !ip.startsWith('127.77.'));
}

/**
 * Upstream resolvers for names outside the mesh when none are configured: those of
 * /etc/resolv.conf. When that lists only systemd-resolved's stub, and resolved itself sends
 * names to the mesh DNS (the NixOS module's setSystemResolver), forwarding to the stub would loop:
 * then the real servers resolved uses, from /run/systemd/resolve/resolv.conf, are the upstreams.
 */
export function systemUpstreams(dnsListenHost: string, readText: (path: string) => string = (p) => readFileSync(p, 'utf8')): string[] {
  const listed = nameservers('/etc/resolv.conf', readText, dnsListenHost);
  if (listed.length > 0 && listed.every((ip) => ip === RESOLVED_STUB)) {
    const real = nameservers(RESOLVED_UPSTREAMS_FILE, readText, dnsListenHost).filter((ip) => ip !== RESOLVED_STUB);
    if (real.length > 0) return real;
  }
  return listed;
}
