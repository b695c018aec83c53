import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isDnsLabel, parseHostPort, validateConfig, type AgentConfig } from '../../src/config/index.js';
import { resolveConfig } from '../../src/daemon/resolve-config.js';
import { ErrorCodes } from '../../src/errors.js';
import { seededRandom } from '../../src/util/random.js';
import { fuzzDecoder, showInput } from './harness.js';

/**
 * The config file (README "Configuration"): validateConfig on arbitrary JSON and on valid configs
 * with one or more fields damaged, and resolveConfig on damaged file texts. Only INVALID_CONFIG
 * may come out, and whatever is accepted satisfies the schema. Seed 0xc0f16.
 */
const SEED = 0xc0f16;

/** The full example of the README, valid as written. */
const VALID: Record<string, unknown> = {
  nodeName: 'server2',
  stateDir: '/var/lib/osmoda-mesh',
  listen: '0.0.0.0:18800',
  publicEndpoints: ['ws://203.0.113.11:18800'],
  control: '/run/osmoda-mesh/control.sock',
  dns: { enable: true, listen: '127.77.0.53:53', upstreams: ['192.0.2.53'], domain: 'mesh' },
  vipRange: '127.77.0.0/16',
  logLevel: 'info',
  tags: ['db'],
  services: { db: { port: 5432, targetHost: '127.0.0.1', targetPort: 5432 } },
  joinTokenFile: '/run/secrets/mesh-token',
  bootstrap: { meshName: null },
  metricsListen: '127.0.0.1:9877',
  hostsFile: null,
};

/** Values a field may be damaged into: other types, boundaries, near misses of valid values. */
const NASTY: unknown[] = [
  null, true, false, 0, -1, 1.5, 65535, 65536, 1e308, -0, '', ' ', 'x', '0', '65536', '-1', '1e3', 'ws://', 'http://h:1', 'ws://u:p@h:1',
  '0.0.0.0:', ':53', '[::1]:53', '[::1]', '256.1.1.1:53', 'a'.repeat(300), '/', 'relative/path', 'server-', '-server', 'Server2', 'über',
  '127.0.0.0/8', '127.77.0.0/31', '10.0.0.0/8', 'bind', 'nat', 'debug', 'verbose', [], [null], ['db', 5], [''], {}, { port: 1 },
  { enable: 'yes' }, { meshName: 'Prod' }, { db: null }, { db: { port: '5432' } }, { 'bad name': { port: 1 } }, { __proto__: null },
  JSON.parse('{"__proto__": {"polluted": true}}'), { constructor: { port: 1 } }, '\u0000', '😀:1', 'ws://h:1/path?q', 1e21,
];

const PATHS: readonly string[][] = [
  ...Object.keys(VALID).map((k) => [k]),
  ['dns', 'enable'], ['dns', 'listen'], ['dns', 'upstreams'], ['dns', 'domain'], ['dns', 'upstreams', '0'],
  ['services', 'db'], ['services', 'db', 'port'], ['services', 'db', 'targetHost'], ['services', 'db', 'targetPort'], ['services', 'db', 'allowFrom'],
  ['bootstrap', 'meshName'], ['publicEndpoints', '0'], ['tags', '0'], ['tags', '1'],
];

function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function setPath(obj: Record<string, unknown>, path: readonly string[], value: unknown, isDelete: boolean): void {
  let at: Record<string, unknown> = obj;
  for (const key of path.slice(0, -1)) {
    const next = at[key];
    if (typeof next !== 'object' || next === null) return;
    at = next as Record<string, unknown>;
  }
  const last = path[path.length - 1]!;
  // JSON has no holes: an array entry is removed, not deleted
  if (isDelete && Array.isArray(at)) at.splice(Number(last), 1);
  else if (isDelete) delete at[last];
  // a copy: the NASTY values are shared between cases, and a later edit may write inside this one
  else Object.defineProperty(at, last, { value: value === undefined ? undefined : clone(value), enumerable: true, writable: true, configurable: true });
}

/** One to four fields of the valid config damaged: deleted, replaced by a nasty or random value, or an unknown key added. */
// random JSON drawn once: generating it per edit was most of this fuzzer's cost
const RANDOM_JSON: unknown[] = fc.sample(fc.jsonValue({ maxDepth: 2 }), { seed: SEED, numRuns: 2_000 });

const mutatedConfigs: fc.Arbitrary<Record<string, unknown>> = fc
  .array(fc.tuple(fc.nat(PATHS.length - 1), fc.nat(9), fc.nat(NASTY.length - 1), fc.nat(RANDOM_JSON.length - 1)), { minLength: 1, maxLength: 4 })
  .map((edits) => {
    const config = clone(VALID);
    for (const [p, op, n, r] of edits) {
      const path = PATHS[p]!;
      const random = RANDOM_JSON[r];
      if (op === 0) setPath(config, path, undefined, true);
      else if (op <= 4) setPath(config, path, NASTY[n], false);
      else if (op <= 7) setPath(config, path, random, false);
      else if (op === 8) setPath(config, [...path.slice(0, -1), `${path[path.length - 1]}x`], 1, false); // a misspelt key
      else setPath(config, path, typeof NASTY[n] === 'string' ? `${NASTY[n] as string} ` : NASTY[n], false);
    }
    return config;
  });

/** What an accepted config must satisfy: everything the agent later relies on without checking. */
function checkedConfig(input: unknown): AgentConfig {
  const config = validateConfig(input, 'host');
  const fail = (why: string): never => {
    throw new Error(`accepted ${showInput(input)}: ${why}`);
  };
  if (!isDnsLabel(config.nodeName)) fail('nodeName');
  if (!config.stateDir.startsWith('/')) fail('stateDir');
  parseHostPort(config.listen, 'listen');
  parseHostPort(config.dns.listen, 'dns.listen');
  if (config.metricsListen !== null) parseHostPort(config.metricsListen, 'metricsListen');
  for (const e of config.publicEndpoints) if (!/^wss?:\/\//.test(e)) fail('endpoint');
  for (const [name, s] of Object.entries(config.services)) {
    if (!isDnsLabel(name)) fail(`service name ${name}`);
    if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535 || !Number.isInteger(s.targetPort) || s.targetPort < 1 || s.targetPort > 65535) fail('service port');
  }
  if (!config.tags.every(isDnsLabel)) fail('tags');
  if (Object.getPrototypeOf(config) !== Object.prototype || ({} as Record<string, unknown>)['polluted'] !== undefined) fail('prototype');
  return config;
}

describe(`config under fuzzing (seed 0x${SEED.toString(16)})`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'osm-fuzz-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('validateConfig: 100,000 arbitrary JSON values, only INVALID_CONFIG', () => {
    const report = fuzzDecoder({
      name: 'config validateConfig(arbitrary JSON)',
      seed: SEED,
      input: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.dictionary(fc.constantFrom(...Object.keys(VALID), 'nodename', 'dns.listen'), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 })),
      decode: checkedConfig,
      allowed: [ErrorCodes.INVALID_CONFIG],
    });
    expect(report.rejected).toBeGreaterThan(50_000);
    expect(report.accepted).toBeGreaterThan(10); // {} and friends: every field has a default
  }, 120_000);

  it('validateConfig: 100,000 valid configs with 1-4 damaged fields, only INVALID_CONFIG naming a field', () => {
    const report = fuzzDecoder({
      name: 'config validateConfig(mutated valid config)',
      seed: SEED + 1,
      input: mutatedConfigs,
      decode: (input) => {
        try {
          return checkedConfig(input);
        } catch (err) {
          // every refusal names the field: "config <field>: expected …, got …"
          if (err instanceof Error && !/^config .*: expected /s.test(err.message)) throw new Error(`message names no field: ${err.message}`);
          throw err;
        }
      },
      allowed: [ErrorCodes.INVALID_CONFIG],
    });
    expect(report.accepted).toBeGreaterThan(5_000);
    expect(report.rejected).toBeGreaterThan(50_000);
  }, 120_000);

  it('a config file whose dns is a string or a list is refused naming dns itself (it was reported as dns.0)', () => {
    const path = join(dir, 'dns.json');
    for (const dns of ['"abc"', '["192.0.2.53"]']) {
      writeFileSync(path, `{"dns": ${dns}}`);
      for (const env of [{}, { OSMODA_MESH_DNS: 'off' }]) {
        expect(() => resolveConfig({ config: path }, env)).toThrow(/^config dns: expected an object/);
      }
    }
  });

  it('resolveConfig: 3,000 damaged config file texts (truncated, BOM, trailing garbage, wrong top type), only INVALID_CONFIG', () => {
    const valid = JSON.stringify(VALID, null, 2);
    const path = join(dir, 'config.json');
    const texts = fc.tuple(fc.nat(7), fc.nat(), fc.nat()).map(([op, a, seed]) => {
      const rnd = seededRandom(seed);
      switch (op) {
        case 0:
          return valid.slice(0, a % (valid.length + 1));
        case 1:
          return `\ufeff${valid}`;
        case 2:
          return `${valid}${String.fromCharCode(...rnd.bytes(1 + (a % 8)))}`;
        case 3: {
          const i = a % valid.length;
          return valid.slice(0, i) + String.fromCharCode(Math.floor(rnd.float() * 128)) + valid.slice(i + 1);
        }
        case 4:
          return ['[]', '"x"', '1', 'null', 'true', '{}', '{"dns": "abc"}', '{"dns": [1, 2]}', '{"services": "db"}'][a % 9]!;
        case 5:
          return JSON.stringify(clone(fc.sample(mutatedConfigs, { seed, numRuns: 1 })[0]));
        default:
          return Buffer.from(rnd.bytes(a % 200)).toString('latin1');
      }
    });
    fuzzDecoder({
      name: 'config resolveConfig(file text)',
      seed: SEED + 2,
      numRuns: 3_000,
      input: texts,
      decode: (text) => {
        writeFileSync(path, text);
        return resolveConfig({ config: path }, {});
      },
      allowed: [ErrorCodes.INVALID_CONFIG],
    });
  }, 120_000);
});
