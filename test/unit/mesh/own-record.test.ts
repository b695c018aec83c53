import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { MeshNode, signRecord, writeJsonFile, MEMBERS_FILE, MESH_FILE, Membership } from '../../../src/mesh/index.js';
import { fromHex, toBase64Url } from '../../../src/util/bytes.js';
import { systemClock } from '../../../src/util/clock.js';
import { systemRandom } from '../../../src/util/random.js';
import { verifyTunnelConfig } from '../../../src/tunnel/index.js';

/** Only a node signs its own record; a newer copy held elsewhere (clock went back, state restored
 * from a backup) must not silence its updates. */

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function node(stateDir: string): MeshNode {
  return new MeshNode({
    stateDir,
    nodeName: 'self',
    publicEndpoints: [],
    tags: [],
    clock: systemClock,
    random: systemRandom,
    logger: pino({ level: 'silent' }),
    tunnelConfig: verifyTunnelConfig(),
    onStream: () => undefined,
    onChange: () => undefined,
  });
}

describe("a node's own record", () => {
  it('a copy from someone else is reported as own and never stored', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'osm-own-'));
    dirs.push(dir);
    const n = node(dir);
    n.initMesh('own');
    const self = n.members().find((m) => m.nodeIdHex === n.identity.nodeIdHex)!;
    const authorityPublic = fromHex((JSON.parse(readFileSync(join(dir, MESH_FILE), 'utf8')) as { authorityPublic: string }).authorityPublic);
    const membership = new Membership(authorityPublic, n.identity.nodeIdHex);
    const echo = membership.apply(self.wire, Date.now());
    expect(echo.result).toBe('own');
    expect(membership.get(n.identity.nodeIdHex)).toBeUndefined();
    expect(membership.apply(self.wire, Date.now(), true).result).toBe('new');
    await n.close();
  });

  it('a stored copy with a sequence ahead of the clock is outranked at start', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'osm-own-'));
    dirs.push(dir);
    const first = node(dir);
    first.initMesh('own');
    first.setServices([{ name: 'db', ports: [5432] }]);
    const future = Date.now() + 10 * 365 * 24 * 3600 * 1000;
    const ahead = signRecord(first.identity.signing, { cert: first.cert!.bytes, seq: future, endpoints: [], services: [{ name: 'old', ports: [1] }], updatedAtMs: 0 });
    writeJsonFile(join(dir, MEMBERS_FILE), { records: [{ body: toBase64Url(ahead.body), signature: toBase64Url(ahead.signature) }] });
    await first.close();

    const second = node(dir);
    const self = second.members().find((m) => m.nodeIdHex === second.identity.nodeIdHex)!;
    expect(self.seq).toBeGreaterThan(future);
    expect(self.services).toEqual([]); // the restored node's own (current) view, not the stale copy
    second.setServices([{ name: 'db', ports: [5432] }]);
    const after = second.members().find((m) => m.nodeIdHex === second.identity.nodeIdHex)!;
    expect(after.seq).toBeGreaterThan(self.seq);
    expect(after.services).toEqual([{ name: 'db', ports: [5432] }]);
    await second.close();
  });
});

