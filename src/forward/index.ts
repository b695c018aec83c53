export { Forwarder } from './forwarder.js';
export type { ForwarderInit } from './forwarder.js';
export { LocalServices, isAllowed } from './local-services.js';
export type { LocalService, LocalTarget, LocalServicesInit } from './local-services.js';
export { splice } from './splice.js';
export { NatTable, natScript, DEFAULT_NAT_TABLE } from './nat-table.js';
export type { NatRule, NatTableInit } from './nat-table.js';
export { findListeningProcess } from './process-finder.js';
