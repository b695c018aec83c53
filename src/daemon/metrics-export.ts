import type { MetricFamily, PeerView } from '../control/index.js';
import type { MeshMetrics } from '../mesh/index.js';
import type { DnsServerStats } from '../names/index.js';

/** What each event counter means and what its label is, for the Prometheus export. */
const COUNTERS: Record<string, { help: string; label: string | null }> = {
  tunnel_up_total: { help: 'Tunnels established (both directions).', label: null },
  peer_rejected_total: { help: 'Peers refused at the handshake, by reason (certificate untrusted, expired, key mismatch).', label: 'reason' },
  handshake_failed_total: { help: 'Tunnel handshakes that failed, by reason.', label: 'reason' },
  handshake_rejected_total: {
    help: 'Connections refused during or before the tunnel handshake, by reason (untrusted-cert, wrong-mesh, expired-cert, key-mismatch, bad-cert, malformed; rate-limited, busy, request-timeout on the tunnel port).',
    label: 'reason',
  },
  protocol_error_total: { help: 'Tunnels closed because the peer broke the stream protocol or sent a message that did not decrypt or decode, by reason.', label: 'reason' },
  record_rejected_total: { help: 'Gossiped node records that did not verify, by reason.', label: 'reason' },
  join_accepted_total: { help: 'Nodes that joined with a token issued here.', label: null },
  revocations_applied_total: { help: 'Newer signed revocation lists applied (tunnels of revoked nodes cut).', label: null },
  cert_renewed_total: { help: 'Renewed certificates this node adopted.', label: null },
  join_refused_total: { help: 'Joins refused by this issuer, by reason.', label: 'reason' },
  stream_accepted_total: { help: 'Streams from peers accepted and connected to a local target, by service.', label: 'service' },
  stream_refused_total: { help: 'Streams from peers refused, by reason.', label: 'reason' },
  access_denied_total: { help: "Streams from peers refused by the service's allowFrom rule, by service.", label: 'service' },
  forward_streams_total: { help: 'Local connections carried to a provider, by service.', label: 'service' },
  forward_failed_total: { help: 'Local connections reset because no provider could take them, by reason.', label: 'reason' },
  listener_failed_total: { help: 'Service listeners that could not bind (port clash), by errno.', label: 'reason' },
};

export function metricFamilies(input: { metrics: MeshMetrics; peers: PeerView[]; serviceCount: number; dns: DnsServerStats | undefined }): MetricFamily[] {
  const out: MetricFamily[] = [];
  const counters = input.metrics.toJSON();
  for (const [name, meta] of Object.entries(COUNTERS)) {
    const byLabel = counters[name] ?? {};
    out.push({
      name,
      help: meta.help,
      type: 'counter',
      samples:
        meta.label === null
          ? [{ value: Object.values(byLabel).reduce((a, b) => a + b, 0) }]
          : Object.entries(byLabel).map(([label, value]) => ({ labels: { [meta.label!]: label }, value })),
    });
  }
  const states = ['up', 'connecting', 'down'] as const;
  out.push({
    name: 'peers',
    help: 'Members of the mesh other than this node, by tunnel state.',
    type: 'gauge',
    samples: states.map((state) => ({ labels: { state }, value: input.peers.filter((p) => p.state === state).length })),
  });
  out.push({ name: 'services', help: 'Mesh services known to this node.', type: 'gauge', samples: [{ value: input.serviceCount }] });
  const up = input.peers.filter((p) => p.state === 'up');
  out.push({ name: 'peer_streams', help: 'Open streams per peer tunnel.', type: 'gauge', samples: up.map((p) => ({ labels: { peer: p.name }, value: p.streams })) });
  out.push({ name: 'peer_rx_bytes_total', help: 'Ciphertext bytes received on the current tunnel, per peer.', type: 'counter', samples: up.map((p) => ({ labels: { peer: p.name }, value: p.rxBytes })) });
  out.push({ name: 'peer_tx_bytes_total', help: 'Ciphertext bytes sent on the current tunnel, per peer.', type: 'counter', samples: up.map((p) => ({ labels: { peer: p.name }, value: p.txBytes })) });
  out.push({
    name: 'peer_rtt_seconds',
    help: 'Last keepalive round trip per peer.',
    type: 'gauge',
    samples: up.filter((p) => p.rttMs !== null).map((p) => ({ labels: { peer: p.name }, value: p.rttMs! / 1000 })),
  });
  out.push({ name: 'peer_buffered_bytes', help: 'Bytes a peer can make this node buffer (stream windows plus queued).', type: 'gauge', samples: up.map((p) => ({ labels: { peer: p.name }, value: p.bufferedBytes })) });
  // The agent process itself (what `npm run bench` reads from /proc), so memory can be watched in
  // production: RSS, and the part of it that is V8's heap and the Buffers outside it.
  const memory = process.memoryUsage();
  const cpu = process.cpuUsage();
  out.push({ name: 'process_resident_memory_bytes', help: 'Resident memory of the agent process.', type: 'gauge', samples: [{ value: memory.rss }] });
  out.push({ name: 'process_heap_used_bytes', help: "V8 heap in use (JavaScript objects).", type: 'gauge', samples: [{ value: memory.heapUsed }] });
  out.push({ name: 'process_heap_total_bytes', help: 'V8 heap reserved (in use plus free space V8 keeps).', type: 'gauge', samples: [{ value: memory.heapTotal }] });
  out.push({ name: 'process_external_memory_bytes', help: 'Memory outside the V8 heap held by JavaScript objects, mostly Buffers (socket reads, messages in flight).', type: 'gauge', samples: [{ value: memory.external }] });
  out.push({ name: 'process_cpu_seconds_total', help: 'CPU time of the agent process, user plus system.', type: 'counter', samples: [{ value: (cpu.user + cpu.system) / 1e6 }] });
  if (input.dns !== undefined) {
    const dns = input.dns;
    out.push({ name: 'dns_queries_total', help: 'DNS messages received.', type: 'counter', samples: [{ value: dns.queries }] });
    out.push({ name: 'dns_forwarded_total', help: 'DNS queries sent on to an upstream resolver.', type: 'counter', samples: [{ value: dns.forwarded }] });
    out.push({
      name: 'dns_answers_total',
      help: 'DNS answers by result.',
      type: 'counter',
      samples: [
        { labels: { result: 'mesh' }, value: dns.answeredLocally },
        { labels: { result: 'nxdomain' }, value: dns.nxdomain },
        { labels: { result: 'servfail' }, value: dns.servfail },
        { labels: { result: 'formerr' }, value: dns.formerr },
        { labels: { result: 'refused' }, value: dns.refused },
      ],
    });
  }
  return out;
}
