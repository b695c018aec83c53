export * from './limits.js';
export * from './frames.js';
export * from './messages.js';
export type { FrameChannel } from './channel.js';
