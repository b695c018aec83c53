import { InvalidArgumentError } from 'commander';
import { isDnsLabel, parseDurationMs, parseHostPort, validateAccessRule, validateEndpoint } from '../config/index.js';

/**
 * Argument parsers for commander: a bad value raises InvalidArgumentError, which commander reports
 * naming the option or argument and the value, and the CLI exits 2 (usage).
 */

export function parsePortArg(value: string): number {
  const port = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError('expected a port 1..65535.');
  return port;
}

export function parseDurationArg(value: string): number {
  try {
    return parseDurationMs(value, 'duration');
  } catch {
    throw new InvalidArgumentError('expected a duration such as 90s, 30m, 24h or 7d.');
  }
}

export function parseCountArg(value: string): number {
  const n = /^\d{1,9}$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number of at least 1.');
  return n;
}

export function parseNameArg(value: string): string {
  if (!isDnsLabel(value)) throw new InvalidArgumentError('expected a DNS label: 1-63 of a-z, 0-9 and -, not starting or ending with -.');
  return value;
}

export function parseHostPortArg(value: string): string {
  try {
    parseHostPort(value, 'address');
  } catch {
    throw new InvalidArgumentError('expected HOST:PORT, e.g. 127.0.0.1:5432.');
  }
  return value;
}

export function collectEndpointArg(value: string, previous: string[] | undefined): string[] {
  try {
    validateEndpoint(value, 'endpoint');
  } catch {
    throw new InvalidArgumentError('expected a ws:// or wss:// URL without credentials, e.g. ws://203.0.113.7:18800/osmoda-mesh/v1.');
  }
  return [...(previous ?? []), value];
}

/** --allow-from web1,tag:frontend (repeatable): node names and tag:<tag> entries. */
export function collectAccessRulesArg(value: string, previous: string[] | undefined): string[] {
  const rules = value.split(',').map((r) => r.trim()).filter((r) => r.length > 0);
  for (const rule of rules) {
    try {
      validateAccessRule(rule, 'allow-from');
    } catch {
      throw new InvalidArgumentError(`expected node names or tag:<tag> entries (DNS labels), got '${rule}'.`);
    }
  }
  return [...(previous ?? []), ...rules];
}
