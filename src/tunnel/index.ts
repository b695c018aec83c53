export * from './config.js';
export { MessageSocket, closeWs } from './message-socket.js';
export { performTunnelHandshake, tunnelPrologue } from './handshake.js';
export type { HandshakeInit, HandshakeResult } from './handshake.js';
export { Tunnel } from './tunnel.js';
export type { TunnelInit, TunnelStats } from './tunnel.js';
export { TunnelServer } from './server.js';
export type { TunnelServerInit } from './server.js';
export { dialWebSocket, endpointUrl } from './dial.js';
