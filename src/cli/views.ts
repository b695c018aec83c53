import type { NodeView, PeerView, ServiceView } from '../control/index.js';
import { formatAge, formatBytes, formatExpiry, formatFields, formatList, formatRtt, formatTable, sanitize } from './output.js';

/** Text renderings of the API views, shared by status, peers, services and resolve. */

export function renderNode(node: NodeView, nowMs: number): string {
  if (!node.isJoined) {
    const fields: [string, string][] = [
      ['node', `${node.name ?? '-'} (not in a mesh: run \`osmoda-mesh init --mesh NAME\` or \`osmoda-mesh join --token-file FILE\`)`],
      ['listen', node.listen],
      ['version', node.version],
    ];
    return formatFields(fields);
  }
  const fields: [string, string][] = [
    ['node', `${node.name ?? '-'}${node.isAdmin ? ' (admin)' : ''}`],
    ['mesh', `${node.mesh ?? '-'}${node.meshId ? ` (id ${node.meshId.slice(0, 16)})` : ''}`],
    ['endpoints', node.endpoints.length === 0 ? '-' : node.endpoints.join(' ')],
    ['listen', node.listen],
    ['dns', node.dns ?? 'off'],
    ['cert expires', formatExpiry(node.certExpiresAt, nowMs)],
    ['version', node.version],
  ];
  if (node.revoked.length > 0) fields.push(['revoked', node.revoked.join(' ')]);
  if (node.certWarning) fields.push(['warning', node.certWarning]);
  return formatFields(fields);
}

export function renderPeers(peers: readonly PeerView[]): string {
  if (peers.length === 0) return 'no peers\n';
  const rows = peers.map((p) => [
    p.name,
    p.state,
    p.path ?? '-',
    formatAge(p.lastHeartbeatAgeMs),
    formatRtt(p.rttMs),
    formatBytes(p.rxBytes),
    formatBytes(p.txBytes),
    String(p.streams),
    formatBytes(p.bufferedBytes),
    formatList(p.services),
  ]);
  let text = formatTable(['PEER', 'STATE', 'PATH', 'HEARTBEAT', 'RTT', 'RX', 'TX', 'STREAMS', 'BUFFERED', 'SERVICES'], rows);
  for (const p of peers) {
    if (p.lastError && p.state !== 'up') text += sanitize(`  ${p.name}: last error: ${p.lastError}`) + '\n';
  }
  return text;
}

function renderProviders(service: ServiceView): string {
  return formatList(service.providers.map((p) => `${p.node}(${p.state})`));
}

export function renderServices(services: readonly ServiceView[]): string {
  if (services.length === 0) return 'no services\n';
  const rows = services.map((s) => [
    s.name,
    s.vip,
    formatList(s.ports.map(String)),
    renderProviders(s),
    s.local ? `${formatList(s.local.ports.map(String))} -> ${s.local.target}` : '-',
    s.local === null ? '-' : s.local.allowFrom === null ? 'all' : s.local.allowFrom.length === 0 ? 'none' : formatList(s.local.allowFrom),
    s.problems.length === 0 ? '-' : s.problems.join('; '),
  ]);
  return formatTable(['SERVICE', 'VIP', 'PORTS', 'PROVIDERS', 'LOCAL', 'ALLOW', 'PROBLEMS'], rows);
}

export function isAnyPeerUp(peers: readonly PeerView[]): boolean {
  return peers.some((p) => p.state === 'up');
}
