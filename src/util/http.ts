import { createRequire } from 'node:module';

/**
 * node:http, loaded with require() rather than an ES import. On Node 22 and 24 an ES import of it
 * builds a module namespace from every export, getters included, and its WebSocket getter loads
 * undici, Node's fetch and WebSocket client, which the agent never uses: 10.7 MB of resident memory
 * on Node 22 and 12 on Node 24, against 1.1 for require() (Node 20: 1.0 either way). Every other
 * builtin the agent imports costs the same either way (measured one by one, 2026-11-27).
 * test/unit/util/http.test.ts checks that loading this module leaves undici unloaded.
 */
const http = createRequire(import.meta.url)('node:http') as typeof import('node:http');

export const createServer = http.createServer;
export const request = http.request;
