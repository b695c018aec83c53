import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../../src/errors.js';
import { findReferences, imageRepository, MAX_PORT_RANGE, parseCompose, parseEnvFile, wellKnownImagePort } from '../../../src/compose/index.js';
import { display, interpolate, InterpolationError } from '../../../src/compose/interpolate.js';
import { expectMeshError } from '../../helpers/mesh-error.js';
import { parseFixture } from './fixtures.js';

const invalid = (text: string, message: RegExp | string): void => {
  expectMeshError(() => parseCompose(text, 'docker-compose.yml'), ErrorCodes.COMPOSE_INVALID, message);
};

describe('ports and expose', () => {
  it('reads short and long ports syntax with their lines (ports.yml)', () => {
    const web = parseFixture('ports.yml').services[0]!;
    const port = (p: { line: number; targets: number[]; protocol: string; published: string | null; hostIp: string | null }) => ({
      line: p.line, targets: p.targets, protocol: p.protocol, published: p.published, hostIp: p.hostIp,
    });
    expect(web.ports.map(port)).toEqual([
      { line: 6, targets: [80], protocol: 'tcp', published: '8080', hostIp: null },
      { line: 7, targets: [443], protocol: 'tcp', published: '8443', hostIp: '127.0.0.1' },
      { line: 8, targets: [9000], protocol: 'tcp', published: null, hostIp: null },
      { line: 9, targets: [3000, 3001, 3002], protocol: 'tcp', published: null, hostIp: null },
      { line: 10, targets: [5000], protocol: 'tcp', published: '5001', hostIp: '0.0.0.0' },
      { line: 16, targets: [6001], protocol: 'tcp', published: '6000', hostIp: '::1' },
      { line: 17, targets: [7000], protocol: 'tcp', published: '', hostIp: '127.0.0.1' },
      { line: 18, targets: [53], protocol: 'udp', published: '53', hostIp: null },
      { line: 19, targets: [5353], protocol: 'udp', published: null, hostIp: null },
    ]);
    expect(web.ports.every((p) => p.source === 'ports' && p.unresolved.length === 0)).toBe(true);
  });

  it('reads expose entries as strings, numbers and with a protocol (expose-only.yml)', () => {
    const model = parseFixture('expose-only.yml');
    expect(model.services.map((s) => [s.name, s.ports.map((p) => [p.source, p.targets, p.protocol, p.line])])).toEqual([
      ['api', [['expose', [9000], 'tcp', 5]]],
      ['worker', [['expose', [9100], 'tcp', 9], ['expose', [9200], 'tcp', 10]]],
    ]);
    expect(model.services[1]!.dependsOn).toEqual([{ value: 'api', line: 12 }]);
  });

  it('takes an unbracketed IPv6 host address and ranges on both sides', () => {
    const model = parseCompose('services:\n  a:\n    ports:\n      - "::1:6000:6001"\n      - "8000-8001:3000-3001"\n', 'c.yml');
    expect(model.services[0]!.ports.map((p) => [p.hostIp, p.published, p.targets])).toEqual([
      ['::1', '6000', [6001]],
      [null, '8000-8001', [3000, 3001]],
    ]);
  });

  it('does not expand a range larger than the limit: an issue with the line, no ports', () => {
    const model = parseCompose(`services:\n  a:\n    expose:\n      - "1000-${1000 + MAX_PORT_RANGE}"\n`, 'c.yml');
    expect(model.services[0]!.ports[0]!.targets).toEqual([]);
    expect(model.issues).toEqual([{ line: 4, message: expect.stringContaining(`a range of ${MAX_PORT_RANGE + 1} ports`) }]);
  });

  it.each([
    ['"80a"', /docker-compose.yml:4: service 'web' ports entry '80a': expected \[\[HOST_IP:\]HOST_PORT:\]CONTAINER_PORT/],
    ['"0"', /:4: service 'web' ports entry '0': expected/],
    ['"70000"', /:4: .*'70000': expected/],
    ['"3002-3000"', /:4: .*'3002-3000': expected/],
    ['"80/http"', /:4: service 'web' ports: protocol 'http': expected tcp, udp or sctp/],
    ['80.5', /:4: service 'web' ports entry 80.5: expected/],
    ['{ published: 80 }', /:4: service 'web' ports entry: expected a 'target' \(the container port\), got none/],
    ['{ target: 80, traget: 81 }', /:4: unknown key 'traget' in service 'web' ports entry \(did you mean 'target'\?\)/],
    ['[80]', /:4: service 'web' ports entry: expected a string, got a list/],
  ])('refuses the ports entry %s naming line, entry and what is expected', (entry, message) => {
    invalid(`services:\n  web:\n    ports:\n      - ${entry}\n`, message);
  });

  it('refuses ports that is not a list', () => {
    invalid('services:\n  web:\n    ports: "80:80"\n', "docker-compose.yml:3: service 'web' ports: expected a list of port mappings, got '80:80'");
  });
});

describe('interpolation', () => {
  it('takes defaults and marks variables with none (interpolation.yml)', () => {
    const model = parseFixture('interpolation.yml');
    expect(model.usesInterpolation).toBe(true);
    const [web, api, admin] = model.services;
    expect(web!.image?.value).toBe('nginx:1.27');
    expect(web!.ports.map((p) => [p.published, p.targets])).toEqual([['8080', [80]], ['8443', [443]]]);
    expect(api!.ports[0]).toMatchObject({ line: 10, targets: [], unresolved: ['API_PORT'], published: '${API_PORT}' });
    expect(admin!.ports[0]).toMatchObject({ source: 'expose', targets: [9090] });
  });

  it.each([
    ['${A:-${B:-80}}', '80', []],
    ['${A-x}', 'x', []],
    ['${A:+alt}y', 'y', []],
    ['$$A', '$A', []],
    ['a$', 'a$', []],
    ['${A}:${B:?needed}', '${A}:${B}', ['A', 'B']],
    ['$HOME/x', '${HOME}/x', ['HOME']],
  ])('interpolates %s without reading the environment', (input, shown, unresolved) => {
    const result = interpolate(input);
    expect(display(result.text)).toBe(shown);
    expect(result.unresolved).toEqual(unresolved);
  });

  it.each(['${A', '${1A}', '${A B}'])('refuses the malformed interpolation %s', (input) => {
    expect(() => interpolate(input)).toThrow(InterpolationError);
  });

  it('reports a malformed interpolation with its line', () => {
    invalid('services:\n  web:\n    expose:\n      - "${PORT"\n', /docker-compose.yml:4: service 'web' expose entry: unterminated/);
  });

  it('does not report interpolation when there is none', () => {
    expect(parseFixture('three-tier.yml').usesInterpolation).toBe(false);
  });
});

describe('networks', () => {
  it('reads lists and mappings with aliases; default is implicit (aliases.yml)', () => {
    const model = parseFixture('aliases.yml');
    const db = model.services.find((s) => s.name === 'db')!;
    expect(db.networks).toEqual([
      { name: 'back', line: 18, aliases: [{ value: 'database', line: 20 }, { value: 'pg', line: 21 }] },
      { name: 'reporting', line: 22, aliases: [{ value: 'warehouse', line: 23 }] },
    ]);
    expect(model.services.find((s) => s.name === 'report')!.networks).toEqual([{ name: 'reporting', line: 26, aliases: [] }]);
    expect([...model.networks.values()]).toEqual([
      { name: 'front', line: 29, isExternal: false },
      { name: 'back', line: 30, isExternal: false },
      { name: 'reporting', line: 32, isExternal: false },
      { name: 'default', line: 0, isExternal: false },
    ]);
  });

  it('reads external networks (untranslatable.yml)', () => {
    expect(parseFixture('untranslatable.yml').networks.get('outside')).toEqual({ name: 'outside', line: 34, isExternal: true });
  });

  it('refuses a network that is not declared, naming it and the declared ones', () => {
    invalid('services:\n  web:\n    networks: [bak]\nnetworks:\n  back:\n', "docker-compose.yml:3: service 'web' networks: network 'bak' is not declared under the top-level networks (declared: back, default) (did you mean 'back'?)");
  });

  it('refuses an unknown key in a service network and in a top-level network', () => {
    invalid('services:\n  web:\n    networks:\n      back:\n        alias: [x]\nnetworks:\n  back:\n', /docker-compose.yml:5: unknown key 'alias' in service 'web' networks 'back' \(did you mean 'aliases'\?\)/);
    invalid('services:\n  web: {}\nnetworks:\n  back:\n    externel: true\n', /docker-compose.yml:5: unknown key 'externel' in network 'back' \(did you mean 'external'\?\)/);
  });
});

describe('keys: unknown ones are errors with the line, valid Compose and x-* are accepted', () => {
  it("names file, line, key and service: unknown-key.yml:13: unknown service key 'prots' in service 'web'", () => {
    expectMeshError(() => parseFixture('unknown-key.yml'), ErrorCodes.COMPOSE_INVALID, /^unknown-key\.yml:13: unknown service key 'prots' in service 'web' \(did you mean 'ports'\?\)$/);
  });

  it('refuses an unknown top-level key', () => {
    invalid('service:\n  web: {}\n', "docker-compose.yml:1: unknown top-level key 'service' (did you mean 'services'?)");
  });

  it('accepts every kind of key that is not the mesh\'s business, x-* keys and YAML merge keys', () => {
    const text = [
      'version: "3.9"',
      'name: demo',
      'x-defaults: &defaults',
      '  restart: unless-stopped',
      '  logging: { driver: json-file }',
      'services:',
      '  web:',
      '    <<: *defaults',
      '    x-team: web',
      '    image: nginx',
      '    build: { context: ., dockerfile: Dockerfile }',
      '    command: ["nginx", "-g", "daemon off;"]',
      '    volumes: ["./html:/usr/share/nginx/html:ro"]',
      '    healthcheck: { test: ["CMD", "true"], interval: 5s }',
      '    deploy: { replicas: 2, resources: { limits: { cpus: "0.5" } } }',
      '    labels: { a: b }',
      '    ports:',
      '      - target: 80',
      '        x-note: fine',
      '    depends_on:',
      '      db: { condition: service_healthy, restart: true }',
      '  db:',
      '    image: postgres',
      'volumes:',
      '  data: {}',
      'x-anything: 1',
    ].join('\n');
    const model = parseCompose(text, 'docker-compose.yml');
    expect(model.services.map((s) => s.name)).toEqual(['web', 'db']);
    expect(model.services[0]!.dependsOn).toEqual([{ value: 'db', line: 21 }]);
  });

  it('refuses a depends_on service that does not exist', () => {
    invalid('services:\n  web:\n    depends_on: [dbb]\n  db: {}\n', "docker-compose.yml:3: service 'web' depends_on 'dbb', which is not a service in this file (did you mean 'db'?)");
  });

  it('records the keys that do not translate with their lines', () => {
    const model = parseFixture('untranslatable.yml');
    expect(model.untranslated).toEqual([{ value: 'secrets', line: 37 }]);
    expect(model.services.find((s) => s.name === 'child')!.untranslated).toEqual([{ value: 'extends', line: 28 }, { value: 'secrets', line: 30 }]);
    expect(model.services.find((s) => s.name === 'monitor')!.networkMode).toEqual({ value: 'host', line: 10 });
    expect(model.services.find((s) => s.name === 'legacy')!.links).toEqual([{ value: 'dns:resolver', line: 18 }]);
    expect(model.services.find((s) => s.name === 'shared')!.containerName).toEqual({ value: 'shared-box', line: 24 });
  });
});

describe('invalid files', () => {
  it('reports invalid YAML with its line (invalid-yaml.yml)', () => {
    expectMeshError(() => parseFixture('invalid-yaml.yml'), ErrorCodes.COMPOSE_INVALID, /^invalid-yaml\.yml:6: invalid YAML: /);
  });

  it.each([
    ['', /docker-compose.yml:1: empty file/],
    ['# only a comment\n', /docker-compose.yml:1: empty file/],
    ['- a\n- b\n', /docker-compose.yml:1: the file: expected a Compose mapping/],
    ['name: x\n', /docker-compose.yml:1: no `services` key/],
    ['services:\n', /docker-compose.yml:1: services: expected a mapping of service name → service, got nothing/],
    ['services: {}\n', /docker-compose.yml:1: services: expected at least one service/],
    ['services:\n  web: nginx\n', /docker-compose.yml:2: service 'web': expected a mapping of service options, got 'nginx'/],
    ['services:\n  "web app": {}\n', /docker-compose.yml:2: service name 'web app'/],
    ['services:\n  web: {}\n  web: {}\n', /docker-compose.yml:3: invalid YAML: Map keys must be unique/],
    ['a: b\n---\nc: d\n', /docker-compose.yml:2: invalid YAML: Source contains multiple documents/],
    ['services:\n  web:\n    <<: *nope\n', /docker-compose.yml:3: /],
    ['services:\n  web:\n    environment: [1]\n', /docker-compose.yml:3: service 'web' environment: expected a string, got 1/],
  ])('refuses %j', (text, message) => {
    invalid(text, message);
  });

  it('refuses a document that aliases expand past the node limit (billion laughs)', () => {
    const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++) lines.push(`a${i}: &a${i} [${new Array(10).fill(`*a${i - 1}`).join(', ')}]`);
    lines.push('services:', '  web:', '    x-bomb: *a8');
    invalid(lines.join('\n'), /expands to more than \d+ nodes/);
  });
});

describe('environment and env_file', () => {
  it('reads environment as a mapping and as a list, and env_file in both forms (env-refs.yml)', () => {
    const model = parseFixture('env-refs.yml');
    const web = model.services[0]!;
    expect(web.environment.map((v) => [v.key, v.line])).toEqual([
      ['DATABASE_URL', 8], ['REDIS_HOST', 9], ['SEARCH', 10], ['WRONG_PORT', 11], ['LOG', 12], ['PASSTHROUGH', 13],
    ]);
    expect(web.environment[5]!.value).toBeNull();
    expect(web.envFiles).toEqual([{ path: 'env-refs.env', line: 15, isRequired: true }, { path: 'missing.env', line: 16, isRequired: false }]);
    expect(model.services[1]!.environment.map((v) => [v.key, v.value])).toEqual([
      ['QUEUE', 'amqp://guest:guest@mq:5672/'], ['ADMIN', 'http://web:8000'], ['PG', 'pgbox:5432'],
    ]);
  });

  it('parses .env files: comments, export, quotes, trailing comments', () => {
    expect(parseEnvFile('# c\nexport A="x y"\nB=\'q\'\nC=1 # note\nD\n\nnot a line!\n')).toEqual([
      { key: 'A', value: 'x y', line: 2 },
      { key: 'B', value: 'q', line: 3 },
      { key: 'C', value: '1', line: 4 },
      { key: 'D', value: null, line: 5 },
    ]);
  });

  it('finds references to known names in URLs, host:port lists and bare names', () => {
    const known = new Set(['db', 'cache', 'kafka1', 'kafka2', 'mongo-a', 'mongo-b']);
    expect(findReferences('postgres://app:p4ss:w@rd@db:5432/app?sslmode=disable', known)).toEqual([{ host: 'db', port: 5432 }]);
    expect(findReferences('kafka1:9092,kafka2:9092', known)).toEqual([{ host: 'kafka1', port: 9092 }, { host: 'kafka2', port: 9092 }]);
    expect(findReferences('mongodb://u:p@mongo-a:27017,mongo-b:27018/x', known)).toEqual([{ host: 'mongo-a', port: 27017 }, { host: 'mongo-b', port: 27018 }]);
    expect(findReferences('cache', known)).toEqual([{ host: 'cache', port: null }]);
    expect(findReferences('redis://CACHE', known)).toEqual([{ host: 'cache', port: null }]);
    expect(findReferences('user:1234@elsewhere db.example.com:5432 xdb:5432 http://[::1]:80 cache:99999', known)).toEqual([]);
  });
});

describe('images', () => {
  it.each([
    ['postgres', 'postgres', 5432],
    ['postgres:16-alpine', 'postgres', 5432],
    ['docker.io/library/redis:7@sha256:abcd', 'redis', 6379],
    ['localhost:5000/mysql:8', 'mysql', 3306],
    ['ghcr.io/org/app:1', 'org/app', undefined],
    ['grafana/grafana:11.0.0', 'grafana/grafana', 3000],
    ['docker.elastic.co/elasticsearch/elasticsearch:8.15.0', 'elasticsearch/elasticsearch', 9200],
  ])('%s is %s with port %s', (image, repository, port) => {
    expect(imageRepository(image)).toBe(repository);
    expect(wellKnownImagePort(image)).toBe(port);
  });
});
