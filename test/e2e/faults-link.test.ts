/**
 * Faults, part 2 (issue 5): the network between two agents breaks while a stream is open.
 * - a 10 s link flap (`ip link set eth0 down` in b's namespace): shorter than the 30 s silence
 *   limit, so the tunnel and the stream must both survive, with not a byte lost or changed;
 * - a one-way partition (b's INPUT drops everything from a; b → a still flows): both agents must
 *   see each other down after 30 s of silence, the stream must be reset (never cut silently or
 *   corrupted), and the mesh must heal by itself once the rule is gone.
 * The 60 s link outage is in faults-link-long.test.ts (a file of its own, so that it runs beside
 * this one); `npm run test:soak` adds five flaps in a row. Measured figures are printed on lines
 * starting with "FAULT ".
 */
import { describe, expect, it } from 'vitest';
import { seconds as s, sleep, useFaultMesh } from './helpers/fault-mesh.js';
import { e2eGate } from './helpers/gate.js';
import { describeCut, RESET_CODES, startDownload, TrafficProcess } from './helpers/traffic.js';

const gate = e2eGate('faults-link');
/** `npm run test:soak` sets this: five flaps in a row too. */
const isSoak = process.env.OSMODA_MESH_SOAK === '1';

const GEN_PORT = 9100;
const ENDLESS_BYTES = 2 ** 40;
/** Paced well below what the mesh carries, so CPU stays free and buffers (≈15 MB) hold < 1 s. */
const PACE_BYTES_PER_S = 16e6;
const FLAP_MS = 10_000;
/** SPEC §4: a ping every 10 s; a peer silent for 30 s is down. */
const PING_INTERVAL_MS = 10_000;
const DEAD_AFTER_MS = 30_000;
/** The silence limit plus the ping timer's granularity (≥ 100 ms) and our 100 ms polls. */
const DOWN_BOUND_MS = DEAD_AFTER_MS + 1_500;
/** Reconnect backoff is capped at 30 s (with jitter); a dial in progress may take up to its 10 s timeout. */
const HEAL_BOUND_MS = 45_000;
const mb = (bytes: number): string => (bytes / 1e6).toFixed(1);

describe.skipIf(!gate.ok)('faults: link flap and one-way partition', () => {
  const m = useFaultMesh({ label: 'link', hosts: ['a', 'b'], servers: [{ host: 'b', name: 'gen', port: GEN_PORT }] });

  /**
   * Cuts b's link for each of `flapsMs` in turn (5 s apart) under one paced stream; checks the
   * tunnel never left `up` on either side and the stream kept every byte; prints the figures.
   */
  const flaps = async (label: string, flapsMs: readonly number[]): Promise<void> => {
    const vip = await m().vip('a', 'gen', 'b');
    const dl = startDownload(m().topo, 'a', vip, GEN_PORT, label, ENDLESS_BYTES, { rateBytesPerSecond: PACE_BYTES_PER_S, progressMs: 100 });
    let isLinkDown = false;
    try {
      await dl.waitFor('8 MB through the mesh', (e) => e.ev === 'progress' && (e.bytes as number) >= 8e6, 30_000);
      const watch = m().watchPeers([
        ['a', 'b'],
        ['b', 'a'],
      ]);
      const resumeMs: number[] = [];
      for (const [i, flapMs] of flapsMs.entries()) {
        if (i > 0) await sleep(5_000);
        const downAt = Date.now();
        await m().topo.linkDown('b');
        isLinkDown = true;
        await sleep(flapMs);
        const upAt = Date.now();
        await m().topo.linkUp('b');
        isLinkDown = false;
        const bytesAtUp = (dl.last('progress')?.bytes as number | undefined) ?? 0;
        const resumed = await dl.waitFor('data flows again after the flap', (e) => e.ev === 'progress' && (e.bytes as number) > bytesAtUp, 60_000);
        // the last progress before the cut showed where the stream stopped moving
        const stoppedAt = dl.events.filter((e) => e.ev === 'progress' && (e.bytes as number) < bytesAtUp).at(-1)?.t as number | undefined;
        resumeMs.push((resumed.t as number) - upAt);
        console.log(
          `FAULT ${label}: link down ${s(upAt - downAt)} s: stream data stopped ${stoppedAt === undefined ? '?' : s(Math.max(0, stoppedAt - downAt))} s after link down, ` +
            `resumed ${s((resumed.t as number) - upAt)} s after link up (no data for ${stoppedAt === undefined ? '?' : s((resumed.t as number) - stoppedAt)} s)`,
        );
        await dl.waitFor('8 MB more after the flap', (e) => e.ev === 'progress' && (e.bytes as number) >= bytesAtUp + 8e6, 30_000);
      }
      const views = await watch.stop();
      dl.send('stop');
      const r = await dl.result(10_000);
      const aView = views.get('a>b')!;
      const bView = views.get('b>a')!;
      console.log(
        `FAULT ${label}: tunnel states seen: a→b ${aView.states.join('/')}, b→a ${bView.states.join('/')}; ` +
          `oldest heartbeat ${s(aView.maxHeartbeatAgeMs)} s on a, ${s(bView.maxHeartbeatAgeMs)} s on b; ` +
          `${mb(r.bytes)} MB on one connection, final event ${r.ev}, prefix intact: ${r.isPrefixOk}`,
      );
      expect(aView.states).toEqual(['up']);
      expect(bView.states).toEqual(['up']);
      expect(r.ev, dl.describe()).toBe('stopped');
      expect(r.isPrefixOk).toBe(true);
      // TCP's retransmission backoff (doubling from 200 ms) decides when the first segment after the
      // outage goes out: ~2.6 s after a 10 s outage; near 30 s would mean something else broke
      for (const [i, ms] of resumeMs.entries()) expect(ms, `flap ${i + 1}`).toBeLessThan((flapsMs[i] ?? 0) + 10_000);
    } finally {
      if (isLinkDown) await m().topo.linkUp('b');
      await dl.stop();
    }
  };

  it('a 10 s link flap: the tunnel and the open stream survive; data resumes with no byte lost or corrupted', { timeout: 120_000 }, async () => {
    await flaps('flap-10s', [FLAP_MS]);
  });

  // Not longer ones: after a cut of more than ~12.6 s TCP's next retry comes ~25.4 s after the
  // cut (the gaps double from 200 ms), so the tunnel outlives a 20 s flap only just (27 s of
  // silence measured) and a loaded host can push that past the 30 s limit (README).
  it.runIf(isSoak)('soak: five 10 s flaps in a row under one stream: it survives them all', { timeout: 300_000 }, async () => {
    await flaps('soak-flaps', [FLAP_MS, FLAP_MS, FLAP_MS, FLAP_MS, FLAP_MS]);
  });

  it('one-way partition (b drops all from a): both sides see down after 30 s of silence, the stream is reset cleanly, the mesh heals', { timeout: 180_000 }, async () => {
    const ipA = m().ip('a');
    const rule = ['INPUT', '-s', ipA, '-j', 'DROP'];
    const vip = await m().vip('a', 'gen', 'b');
    await m().waitPeerState('b', 'a', 'up', Date.now(), 30_000);
    const dl = startDownload(m().topo, 'a', vip, GEN_PORT, 'oneway', ENDLESS_BYTES, { rateBytesPerSecond: PACE_BYTES_PER_S, progressMs: 100 });
    let prober: TrafficProcess | undefined;
    let isRuleIn = false;
    try {
      await dl.waitFor('8 MB through the mesh', (e) => e.ev === 'progress' && (e.bytes as number) >= 8e6, 30_000);
      const cutAt = Date.now();
      await m().topo.execOk('b', 'iptables', ['-w', '5', '-I', ...rule]);
      isRuleIn = true;
      // the other direction still works: b's own packets reach a
      const [downOnA, downOnB, cut] = await Promise.all([
        m().waitPeerLost('a', 'b', cutAt, DOWN_BOUND_MS + 10_000),
        m().waitPeerLost('b', 'a', cutAt, DOWN_BOUND_MS + 10_000),
        dl.result(DOWN_BOUND_MS + 10_000).then((r) => ({ ...r, afterMs: (r.t as number) - cutAt })),
      ]);
      console.log(
        `FAULT one-way: down detected ${s(downOnA.ms)} s after the cut on a, the receiving side (${downOnA.state}, ${s(downOnA.silentMs)} s after it last heard b), ` +
          `${s(downOnB.ms)} s on b, the dropping side (${downOnB.state}, ${s(downOnB.silentMs)} s of silence)`,
      );
      console.log(
        `FAULT one-way: client connection ended with ${describeCut(cut)} ${s(cut.afterMs)} s after the cut; ` +
          `${mb(cut.bytes)} MB received, prefix of the expected stream: ${cut.isPrefixOk}`,
      );
      // the 30 s count from the last message heard; a still hears b for a while after the cut (b's
      // next ping goes out if b has no unacknowledged data then), so a's may start up to a ping
      // interval later
      expect(downOnA.silentMs).toBeLessThanOrEqual(DOWN_BOUND_MS);
      expect(downOnB.silentMs).toBeLessThanOrEqual(DOWN_BOUND_MS);
      expect(downOnA.ms).toBeLessThanOrEqual(DOWN_BOUND_MS + PING_INTERVAL_MS);
      expect(downOnB.ms).toBeLessThanOrEqual(DOWN_BOUND_MS);
      expect(cut.ev, dl.describe()).toBe('error');
      expect(RESET_CODES).toContain(cut.code);
      expect(cut.isPrefixOk).toBe(true);

      prober = new TrafficProcess(m().topo, 'a', ['probe', vip, String(GEN_PORT), 'probe', String(256 * 1024), '250']);
      const healAt = Date.now();
      await m().topo.execOk('b', 'iptables', ['-w', '5', '-D', ...rule]);
      isRuleIn = false;
      const [upOnA, upOnB, serviceOk] = await Promise.all([
        m().waitPeerState('a', 'b', 'up', healAt, HEAL_BOUND_MS + 15_000),
        m().waitPeerState('b', 'a', 'up', healAt, HEAL_BOUND_MS + 15_000),
        prober.waitFor('a probe through the VIP succeeds', (e) => e.ev === 'probe-ok' && (e.t as number) >= healAt, HEAL_BOUND_MS + 15_000),
      ]);
      const serviceMs = (serviceOk.t as number) - healAt;
      console.log(
        `FAULT one-way: partition held ${s(healAt - cutAt)} s; after the rule was removed: tunnel up on a after ${s(upOnA)} s, on b after ${s(upOnB)} s, ` +
          `service through the VIP after ${s(serviceMs)} s`,
      );
      expect(Math.max(upOnA, upOnB, serviceMs)).toBeLessThanOrEqual(HEAL_BOUND_MS);
    } finally {
      if (isRuleIn) await m().topo.exec('b', 'iptables', ['-w', '5', '-D', ...rule]);
      await prober?.stop();
      await dl.stop();
    }
  });
});
