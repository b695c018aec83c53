// Serves the same deterministic byte stream to every connection, then closes it.
// Usage: node blob-server.mjs <host> <port> <sizeBytes> <seed>
// The stream is the AES-128-CTR keystream under key sha256("osmt-blob-v1:<seed>")[0..16], IV 0:
// fast, and reproduced in-process by expectedSha256() in services.ts without sharing a file.
import { createCipheriv, createHash } from 'node:crypto';
import { createServer } from 'node:net';

const [host, portText, sizeText, seedText] = process.argv.slice(2);
const port = Number(portText);
const sizeBytes = Number(sizeText);
if (!host || !Number.isInteger(port) || port < 1 || port > 65535 || !Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || seedText === undefined) {
  console.error(`blob-server: expected <host> <port 1..65535> <sizeBytes >= 0> <seed>, got ${process.argv.slice(2).join(' ')}`);
  process.exit(2);
}
const CHUNK = 64 * 1024;
const zeros = Buffer.alloc(CHUNK);
const key = createHash('sha256').update(`osmt-blob-v1:${seedText}`).digest().subarray(0, 16);

const server = createServer((socket) => {
  socket.on('error', () => socket.destroy());
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  let left = sizeBytes;
  const pump = () => {
    while (left > 0) {
      const n = Math.min(CHUNK, left);
      left -= n;
      if (!socket.write(cipher.update(n === CHUNK ? zeros : zeros.subarray(0, n)))) {
        socket.once('drain', pump);
        return;
      }
    }
    socket.end();
  };
  pump();
});
server.on('error', (err) => {
  console.error(`blob-server: ${err.message}`);
  process.exit(1);
});
server.listen(port, host, () => console.log(`listening ${host}:${port}`));
