import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { MetricsServer, renderPrometheus } from '../../../src/control/index.js';
import { MeshMetrics } from '../../../src/mesh/index.js';
import { metricFamilies } from '../../../src/daemon/metrics-export.js';
import { samplePeer } from './fixtures.js';

describe('Prometheus export', () => {
  it('renders HELP, TYPE and escaped label values', () => {
    const text = renderPrometheus([
      { name: 'peer_rejected_total', help: 'Peers refused.', type: 'counter', samples: [{ labels: { reason: 'a"b\\c\nd' }, value: 2 }] },
      { name: 'services', help: 'Services.', type: 'gauge', samples: [{ value: 3 }] },
    ]);
    expect(text).toBe(
      [
        '# HELP osmoda_mesh_peer_rejected_total Peers refused.',
        '# TYPE osmoda_mesh_peer_rejected_total counter',
        'osmoda_mesh_peer_rejected_total{reason="a\\"b\\\\c\\nd"} 2',
        '# HELP osmoda_mesh_services Services.',
        '# TYPE osmoda_mesh_services gauge',
        'osmoda_mesh_services 3',
        '',
      ].join('\n'),
    );
  });

  it('maps the agent counters to labelled families and peers to per-peer gauges', () => {
    const metrics = new MeshMetrics();
    metrics.count('peer_rejected_total', 'MESH_ERR_CERT_UNTRUSTED');
    metrics.count('peer_rejected_total', 'MESH_ERR_CERT_UNTRUSTED');
    metrics.count('tunnel_up_total', 'ok', 3);
    const text = renderPrometheus(metricFamilies({ metrics, peers: [samplePeer('b', 'up'), samplePeer('c', 'down')], serviceCount: 4, dns: undefined }));
    expect(text).toContain('osmoda_mesh_peer_rejected_total{reason="MESH_ERR_CERT_UNTRUSTED"} 2');
    expect(text).toContain('osmoda_mesh_tunnel_up_total 3');
    expect(text).toContain('osmoda_mesh_peers{state="up"} 1');
    expect(text).toContain('osmoda_mesh_peers{state="down"} 1');
    expect(text).toContain('osmoda_mesh_services 4');
    expect(text).toMatch(/osmoda_mesh_peer_rx_bytes_total\{peer="b"\} \d+/);
    expect(text).not.toContain('peer="c"');
  });

  it('serves /metrics and /healthz over HTTP and 404s anything else', async () => {
    const server = new MetricsServer({
      host: '127.0.0.1',
      port: 0,
      collect: () => [{ name: 'services', help: 'Services.', type: 'gauge', samples: [{ value: 1 }] }],
      health: () => ({ ok: true, text: 'ok: 2 peer(s) up' }),
      logger: pino({ level: 'silent' }),
    });
    const { port } = await server.listen();
    try {
      const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(metrics.status).toBe(200);
      expect(metrics.headers.get('content-type')).toContain('version=0.0.4');
      expect(await metrics.text()).toContain('osmoda_mesh_services 1');
      const health = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.text()).toBe('ok: 2 peer(s) up\n');
      expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);
      expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' })).status).toBe(405);
    } finally {
      await server.close();
    }
  });
});
