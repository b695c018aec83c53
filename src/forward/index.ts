export { Forwarder } from './forwarder.js';
export type { ForwarderInit } from './forwarder.js';
export { LocalServices, isAllowed } from './local-services.js';
export type { LocalService, LocalTarget, LocalServicesInit } from './local-services.js';
export { splice } from './splice.js';
export { findListeningProcess } from './process-finder.js';
