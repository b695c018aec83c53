export { EARLY_DATA_BYTES, MAX_WIRE_WINDOW_BYTES, defaultMuxConfig, resolveMuxConfig, verifyMuxConfig } from './config.js';
export type { MuxConfig } from './config.js';
export { ReceiveWindow, SendCredit } from './credit-window.js';
export type { ReceiveWindowOptions } from './credit-window.js';
export { MuxStream, StreamResetError } from './stream.js';
export type { MuxStreamInit, MuxStreamStats, StreamDirection } from './stream.js';
export { MuxSession } from './session.js';
export type { MuxSessionInit, MuxSessionStats, StreamOpenInfo } from './session.js';
