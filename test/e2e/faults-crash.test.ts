/**
 * Faults, part 1 (issue 5): an agent killed with SIGKILL in the middle of a transfer, what an agent
 * keeps across a restart, and a state dir that is read-only or on a full disk at start. Agents run
 * as separate processes in network namespaces (a, b, c, plus d that joins during the test) and the
 * traffic is real TCP through the mesh VIPs (helpers/traffic.mjs checks every byte it receives).
 * Measured figures are printed on lines starting with "FAULT ".
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ServicesResponse, StatusResponse, TokenListResponse } from '../../src/control/protocol.js';
import { describeExec, MAIN_JS, pollUntil } from './helpers/agents.js';
import { seconds as s, useFaultMesh } from './helpers/fault-mesh.js';
import { e2eGate } from './helpers/gate.js';
import { createTopology, isPidRunning, NAME_PREFIX, TMP_ROOT } from './helpers/netns.js';
import type { Topology } from './helpers/netns.js';
import { describeCut, downloadOnce, RESET_CODES, startDownload, startTrafficServer, TrafficProcess } from './helpers/traffic.js';

const gate = e2eGate('faults-crash');

const GEN_PORT = 9100;
const KEEP_PORT = 9200;
/** Longer than any test can read: the transfer is always cut, never finished. */
const ENDLESS_BYTES = 2 ** 40;
const DOWN_BOUND_MS = 30_000;
const RECOVER_BOUND_MS = 5_000;

describe.skipIf(!gate.ok)('faults: kill -9 mid-transfer, restart keeps state', () => {
  const m = useFaultMesh({
      label: 'crash',
      hosts: ['a', 'b', 'c'],
      spare: ['d'],
      servers: [{ host: 'b', name: 'gen', port: GEN_PORT }],
    });

  it('kill -9 of the provider mid-transfer: peers see it down, the client gets a reset and a clean prefix, restart recovers within 5 s of ready', { timeout: 150_000 }, async () => {
    const vip = await m().vip('a', 'gen', 'b');
    // paced, so the transfer is surely in flight (not finished, not starved of CPU) at the kill
    const dl = startDownload(m().topo, 'a', vip, GEN_PORT, 'kill9', ENDLESS_BYTES, { rateBytesPerSecond: 16e6, progressMs: 100 });
    let prober: TrafficProcess | undefined;
    try {
      await dl.waitFor('8 MB through the mesh', (e) => e.ev === 'progress' && (e.bytes as number) >= 8e6, 30_000);
      const oldPid = m().pidOf('b');
      const killedAt = Date.now();
      process.kill(-oldPid, 'SIGKILL');

      const [downOnA, downOnC, cut] = await Promise.all([
        m().waitPeerLost('a', 'b', killedAt, DOWN_BOUND_MS + 5_000),
        m().waitPeerLost('c', 'b', killedAt, DOWN_BOUND_MS + 5_000),
        dl.result(DOWN_BOUND_MS + 5_000).then((r) => ({ ...r, afterMs: (r.t as number) - killedAt })),
      ]);
      console.log(`FAULT kill-9: down detected after ${s(downOnA.ms)} s on a (${downOnA.state}), ${s(downOnC.ms)} s on c (${downOnC.state})`);
      console.log(
        `FAULT kill-9: client connection ended with ${describeCut(cut)} after ${s(cut.afterMs)} s; ` +
          `${(cut.bytes / 1e6).toFixed(1)} MB received, prefix of the expected stream: ${cut.isPrefixOk}`,
      );
      expect(downOnA.ms).toBeLessThanOrEqual(DOWN_BOUND_MS);
      expect(downOnC.ms).toBeLessThanOrEqual(DOWN_BOUND_MS);
      // a reset, never a clean end: a cut stream must not look complete to the application
      expect(cut.ev, dl.describe()).toBe('error');
      expect(RESET_CODES).toContain(cut.code);
      expect(cut.isPrefixOk).toBe(true);
      expect(cut.bytes).toBeGreaterThanOrEqual(8e6);
      await pollUntil('old agent b has exited', { timeoutMs: 5_000, intervalMs: 50 }, async () => (isPidRunning(oldPid) ? undefined : true));

      // a probe through the VIP every 100 ms shows when the service works again
      prober = new TrafficProcess(m().topo, 'a', ['probe', vip, String(GEN_PORT), 'probe', String(256 * 1024), '100']);
      const restartedAt = Date.now();
      m().startAgent('b');
      const readyMs = await m().waitReady('b', restartedAt);
      const readyAt = restartedAt + readyMs;
      const [upOnA, upOnC, serviceOk] = await Promise.all([
        m().waitPeerState('a', 'b', 'up', readyAt, 40_000, 50),
        m().waitPeerState('c', 'b', 'up', readyAt, 40_000, 50),
        prober.waitFor('a probe through the VIP succeeds', (e) => e.ev === 'probe-ok' && (e.t as number) >= readyAt, 40_000),
      ]);
      const serviceMs = (serviceOk.t as number) - readyAt;
      console.log(
        `FAULT kill-9: restarted agent answered after ${s(readyMs)} s; then tunnel up on a after ${s(upOnA)} s, on c after ${s(upOnC)} s, ` +
          `service through the VIP after ${s(serviceMs)} s`,
      );
      expect(upOnA).toBeLessThanOrEqual(RECOVER_BOUND_MS);
      expect(upOnC).toBeLessThanOrEqual(RECOVER_BOUND_MS);
      expect(serviceMs).toBeLessThanOrEqual(RECOVER_BOUND_MS);

      const after = await downloadOnce(m().topo, 'a', vip, GEN_PORT, 'after-kill', 8 * 1024 * 1024, 30_000);
      expect(after.ev, JSON.stringify(after)).toBe('end');
      expect(after.isComplete && after.isPrefixOk).toBe(true);
    } finally {
      await prober?.stop();
      await dl.stop();
      // the next test needs b whatever happened here
      if (!isPidRunning(m().fleet.child('b')?.pid ?? -1)) m().startAgent('b');
    }
  });

  it('a restart (kill -9) keeps node id, membership, a token\'s remaining uses and runtime exposures', { timeout: 150_000 }, async () => {
    const f = m().fleet;
    // a runtime exposure on a, and a 3-use token of which d uses one
    m().servers.set('keep', await startTrafficServer(m().topo, 'a', KEEP_PORT));
    await f.cliOk('a', ['expose', 'keep', String(KEEP_PORT)]);
    await f.cliOk('a', ['token', 'create', '--uses', '3']).then((out) => {
      expect(out.trim()).toMatch(/^osmt1_/);
      m().writeToken('three-uses', out.trim());
    });
    const tokens = JSON.parse(await f.cliOk('a', ['token', 'list', '--json'])) as TokenListResponse;
    const three = tokens.tokens.filter((t) => t.usesLeft === 3);
    expect(three).toHaveLength(1);
    const tokenId = three[0]!.tokenId;
    await f.cliOk('d', ['join', '--token-file', m().tokenFile('three-uses'), '--name', 'd']);
    const usesLeft = async (): Promise<number | undefined> =>
      (JSON.parse(await f.cliOk('a', ['token', 'list', '--json'])) as TokenListResponse).tokens.find((t) => t.tokenId === tokenId)?.usesLeft;
    expect(await usesLeft()).toBe(2);
    await f.waitAllUp(['a', 'b', 'c', 'd'], 60_000);
    await m().vip('b', 'keep', 'a');

    const before = (await m().status('a')) as StatusResponse;
    const pid = m().pidOf('a');
    process.kill(-pid, 'SIGKILL');
    await pollUntil('agent a has exited', { timeoutMs: 5_000, intervalMs: 50 }, async () => (isPidRunning(pid) ? undefined : true));
    const restartedAt = Date.now();
    m().startAgent('a');
    const readyMs = await m().waitReady('a', restartedAt);
    const readyAt = restartedAt + readyMs;
    // watched from now on, while the checks below run
    const pairs = ['b', 'c', 'd'].flatMap((peer) => [
      ['a', peer],
      [peer, 'a'],
    ]);
    const upTimesPromise = Promise.all(pairs.map(([from, to]) => m().waitPeerState(from!, to!, 'up', readyAt, 40_000, 50)));
    upTimesPromise.catch(() => undefined); // awaited below; a check failing first must not leave it unhandled

    const after = (await m().status('a')) as StatusResponse;
    expect(after.node.nodeId).toBe(before.node.nodeId);
    expect(after.node.name).toBe('a');
    expect(after.node.meshId).toBe(before.node.meshId);
    expect(after.node.isAdmin).toBe(true);
    // members come from the state dir at once, before any peer has reconnected and gossiped
    expect(after.peers.map((p) => p.name).sort()).toEqual(['b', 'c', 'd']);
    expect(await usesLeft()).toBe(2);
    const services = JSON.parse(await f.cliOk('a', ['services', '--json'])) as ServicesResponse;
    const keep = services.services.find((sv) => sv.name === 'keep');
    expect(keep?.local?.target).toBe(`127.0.0.1:${KEEP_PORT}`);
    expect(keep?.ports).toEqual([KEEP_PORT]);

    const upTimes = await upTimesPromise;
    const upMs = Math.max(...upTimes);
    const upDetail = pairs.map(([from, to], i) => `${from}→${to} ${s(upTimes[i]!)}`).join(', ');
    expect(upMs).toBeLessThanOrEqual(RECOVER_BOUND_MS);
    const vip = await m().vip('b', 'keep', 'a');
    const got = await downloadOnce(m().topo, 'b', vip, KEEP_PORT, 'keep', 4 * 1024 * 1024, 30_000);
    expect(got.ev, JSON.stringify(got)).toBe('end');
    expect(got.isComplete && got.isPrefixOk).toBe(true);
    console.log(
      `FAULT restart: node id ${after.node.nodeId?.slice(0, 12)}… kept, peers b c d kept, token ${tokenId.slice(0, 8)}… 2 uses left, ` +
        `'keep' still exposed and reachable from b; ready ${s(readyMs)} s after start, all 3 tunnels up (both ends) ${s(upMs)} s later (${upDetail})`,
    );
  });
});

/**
 * The state dir at start: read-only, or on a full disk. Each case runs in one `ip netns exec` shell,
 * which has a mount namespace of its own: the small tmpfs it mounts disappears with it, whatever
 * happens to this test process.
 */
describe.skipIf(!gate.ok)('faults: read-only or full state dir at start', () => {
  let topo: Topology | undefined;
  let dir: string | undefined;
  let srcState: string | undefined;
  let hasFailed = false;
  const t = (): Topology => topo!;
  const d = (): string => dir!;

  const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');
  const snapshot = (stateDir: string): Record<string, string> =>
    Object.fromEntries(
      readdirSync(stateDir)
        .sort()
        .map((name) => [name, sha256(join(stateDir, name))]),
    );

  interface StartResult {
    code: number | null;
    stderr: string;
    mnt: string;
    /** What the state dir held after the agent exited (copied out of the tmpfs), or null if it did not exist. */
    after: Record<string, string> | null;
    ms: number;
  }

  /**
   * Mounts a 64 KiB tmpfs at a fresh dir, optionally copies `srcState` into it as `state`, fills
   * it or makes it read-only, starts the agent on it (SIGKILLed after 15 s if it does not exit),
   * and copies whatever the state dir then holds back out.
   */
  const startOn = async (label: string, prepare: { copyState: boolean; fill: boolean; readOnly: boolean }): Promise<StartResult> => {
    const mnt = join(d(), `${label}-mnt`);
    const out = join(d(), `${label}-after`);
    mkdirSync(mnt);
    const state = `${mnt}/state`;
    const q = (p: string): string => `'${p}'`;
    const script = [
      'set -u',
      `mount -t tmpfs -o size=64k,mode=0700 tmpfs ${q(mnt)}`,
      prepare.copyState ? `cp -a ${q(srcState!)} ${q(state)}` : prepare.readOnly ? 'true' : `mkdir -m 0700 ${q(state)}`,
      prepare.fill ? `dd if=/dev/zero of=${q(`${mnt}/filler`)} bs=4k count=64 2>/dev/null; true` : 'true',
      prepare.readOnly ? `mount -o remount,ro ${q(mnt)}` : 'true',
      `timeout -s KILL 15 ${q(process.execPath)} ${q(MAIN_JS)} agent --state-dir ${q(state)} --listen 127.0.0.1:18899 --control ${q(join(d(), `${label}.sock`))} --dns off >${q(join(d(), `${label}.out`))} 2>${q(join(d(), `${label}.err`))}`,
      'echo "exit=$?"',
      `if [ -d ${q(state)} ]; then mkdir ${q(out)} && cp -a ${q(state)}/. ${q(out)}/; fi`,
    ].join('\n');
    const startedAt = Date.now();
    const r = await t().exec('x', 'sh', ['-c', script], { timeoutMs: 30_000 });
    const ms = Date.now() - startedAt;
    const exit = /exit=(\d+)/.exec(r.stdout);
    if (exit === null) throw new Error(`state dir case ${label}: the shell did not run the agent: ${describeExec(r)}`);
    return {
      code: Number(exit[1]),
      stderr: readFileSync(join(d(), `${label}.err`), 'utf8'),
      mnt,
      after: existsSync(out) ? snapshot(out) : null,
      ms,
    };
  };

  beforeAll(async () => {
    try {
      dir = mkdtempSync(join(TMP_ROOT, `${NAME_PREFIX}${process.pid}-disk-`));
      topo = await createTopology({ hosts: ['x'] });
      // a real state dir (identity, mesh, authority, members) from one agent run, to copy from
      srcState = join(d(), 'src-state');
      const control = join(d(), 'src.sock');
      const child = t().spawn('x', process.execPath, [MAIN_JS, 'agent', '--state-dir', srcState, '--listen', '127.0.0.1:18898', '--control', control, '--dns', 'off'], {
        env: { ...process.env, OSMODA_MESH_NODE_NAME: 'x' },
        stdio: 'ignore',
      });
      await pollUntil('source agent answers', { timeoutMs: 20_000 }, async () => {
        const r = await t().exec('x', process.execPath, [MAIN_JS, 'init', '--mesh', 'disk', '--control', control], { timeoutMs: 10_000 });
        return r.code === 0 ? true : undefined;
      });
      await t().kill(child, 5_000);
      expect(readdirSync(srcState).sort()).toEqual(['authority.key', 'identity.key', 'members.json', 'mesh.json']);
    } catch (err) {
      hasFailed = true;
      throw err;
    }
  }, 60_000);

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') hasFailed = true;
  });

  afterAll(async () => {
    await topo?.destroy();
    if (dir !== undefined) {
      if (hasFailed) console.error(`faults e2e: state dir cases kept in ${dir}`);
      else rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('read-only, state dir missing: exit 1 naming the path and the read-only file system; nothing created', { timeout: 40_000 }, async () => {
    const r = await startOn('ro-new', { copyState: false, fill: false, readOnly: true });
    console.log(`FAULT state-dir read-only (new): exit ${r.code} after ${s(r.ms)} s: ${r.stderr.trim()}`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${r.mnt}/state`);
    expect(r.stderr).toMatch(/read-only file system/i);
    expect(r.after).toBeNull();
  });

  it('read-only, existing state: exit 1 naming the path; every key file unchanged, no temp file', { timeout: 40_000 }, async () => {
    const r = await startOn('ro-old', { copyState: true, fill: false, readOnly: true });
    console.log(`FAULT state-dir read-only (existing): exit ${r.code} after ${s(r.ms)} s: ${r.stderr.trim()}`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${r.mnt}/state`);
    expect(r.stderr).toMatch(/read-only file system/i);
    expect(r.after).toEqual(snapshot(srcState!));
  });

  it('full disk, new state dir: exit 1 naming the key file and the full disk; no partial key, no temp file', { timeout: 40_000 }, async () => {
    const r = await startOn('full-new', { copyState: false, fill: true, readOnly: false });
    console.log(`FAULT state-dir disk full (new): exit ${r.code} after ${s(r.ms)} s: ${r.stderr.trim()}`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${r.mnt}/state/identity.key`);
    expect(r.stderr).toMatch(/no space left on device/i);
    expect(r.after).toEqual({});
  });

  it('full disk, existing state: exit 1 naming the path; every key file unchanged, no temp file', { timeout: 40_000 }, async () => {
    const r = await startOn('full-old', { copyState: true, fill: true, readOnly: false });
    console.log(`FAULT state-dir disk full (existing): exit ${r.code} after ${s(r.ms)} s: ${r.stderr.trim()}`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${r.mnt}/state`);
    expect(r.stderr).toMatch(/no space left on device/i);
    expect(r.after).toEqual(snapshot(srcState!));
  });
});
