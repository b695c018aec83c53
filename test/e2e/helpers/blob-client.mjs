// Reads everything one connection sends and prints {"sha256","bytes","ms"} as JSON.
// Usage: node blob-client.mjs <host> <port> <timeoutMs>
import { createHash } from 'node:crypto';
import { connect } from 'node:net';

const [host, portText, timeoutText] = process.argv.slice(2);
const port = Number(portText);
const timeoutMs = Number(timeoutText ?? '60000');
if (!host || !Number.isInteger(port) || port < 1 || port > 65535 || !(timeoutMs > 0)) {
  console.error(`blob-client: expected <host> <port 1..65535> [timeoutMs > 0], got ${process.argv.slice(2).join(' ')}`);
  process.exit(2);
}
const hash = createHash('sha256');
let bytes = 0;
const start = performance.now();
const socket = connect({ host, port });
socket.setTimeout(timeoutMs, () => {
  console.error(`blob-client: no data for ${timeoutMs} ms from ${host}:${port} after ${bytes} bytes`);
  process.exit(1);
});
socket.on('data', (chunk) => {
  hash.update(chunk);
  bytes += chunk.length;
});
socket.on('end', () => {
  console.log(JSON.stringify({ sha256: hash.digest('hex'), bytes, ms: performance.now() - start }));
  process.exit(0);
});
socket.on('error', (err) => {
  console.error(`blob-client: ${host}:${port}: ${err.message}`);
  process.exit(1);
});
