import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { listenTcp } from '../tunnel/index.js';
import { createServer } from '../util/http.js';

/**
 * Prometheus text exposition (format 0.0.4) of the agent's counters and gauges, and the optional
 * TCP listener that serves it with /healthz (SPEC §2 control). Pure rendering plus a tiny server:
 * the daemon supplies the numbers.
 */

export interface MetricSample {
  labels?: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  /** Without the osmoda_mesh_ prefix. */
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  samples: MetricSample[];
}

const PREFIX = 'osmoda_mesh_';

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function renderPrometheus(families: readonly MetricFamily[]): string {
  const lines: string[] = [];
  for (const family of families) {
    const name = PREFIX + family.name;
    lines.push(`# HELP ${name} ${escapeHelp(family.help)}`, `# TYPE ${name} ${family.type}`);
    for (const sample of family.samples) {
      const labels = Object.entries(sample.labels ?? {});
      const labelText = labels.length === 0 ? '' : `{${labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}`;
      lines.push(`${name}${labelText} ${Number.isFinite(sample.value) ? sample.value : 0}`);
    }
  }
  return lines.join('\n') + '\n';
}

export interface MetricsServerInit {
  host: string;
  port: number;
  collect(): MetricFamily[];
  /** 200 with this text while it returns ok, 503 otherwise. */
  health(): { ok: boolean; text: string };
  logger: Logger;
}

/** GET /metrics and GET /healthz on a TCP address; everything else 404. Read-only, no bodies. */
export class MetricsServer {
  readonly #init: MetricsServerInit;
  readonly #server: Server;
  #isClosed = false;

  constructor(init: MetricsServerInit) {
    this.#init = init;
    this.#server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      try {
        if (path === '/metrics') {
          res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(renderPrometheus(init.collect()));
        } else if (path === '/healthz') {
          const health = init.health();
          res.writeHead(health.ok ? 200 : 503, { 'content-type': 'text/plain; charset=utf-8' }).end(health.text + '\n');
        } else {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /healthz\n');
        }
      } catch (err) {
        init.logger.error({ err: (err as Error).message }, 'metrics request failed');
        res.writeHead(500).end();
      }
    });
    this.#server.headersTimeout = 5_000;
    this.#server.requestTimeout = 5_000;
  }

  listen(): Promise<{ host: string; port: number }> {
    return listenTcp(this.#server, this.#init.host, this.#init.port, 'metrics listener');
  }


  async close(): Promise<void> {
    if (this.#isClosed) return;
    this.#isClosed = true;
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}
