import WebSocket from 'ws';
import { ErrorCodes, MeshError } from '../errors.js';
import { NOISE_MAX_MESSAGE } from '../wire/index.js';

/** Opens a WebSocket to a peer endpoint + path; resolves once open, rejects with DIAL_FAILED. */
export function dialWebSocket(url: string, timeoutMs: number): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, {
        maxPayload: NOISE_MAX_MESSAGE,
        perMessageDeflate: false,
        skipUTF8Validation: true,
        handshakeTimeout: timeoutMs,
        followRedirects: false,
        // RFC 6455 masking protects HTTP intermediaries from attacker-chosen bytes; every payload
        // here is Noise ciphertext, which no one can choose, so an all-zero mask (which ws then
        // skips) costs nothing in safety and saves a copy and an XOR of every byte we send.
        generateMask: (mask: Buffer) => {
          mask.fill(0);
        },
      });
    } catch (err) {
      reject(new MeshError(ErrorCodes.DIAL_FAILED, `cannot dial ${url}: ${(err as Error).message}`, { cause: err }));
      return;
    }
    const onError = (err: Error): void => {
      cleanup();
      ws.terminate();
      reject(new MeshError(ErrorCodes.DIAL_FAILED, `cannot reach ${url}: ${err.message}`, { cause: err }));
    };
    const onUnexpected = (_req: unknown, res: { statusCode?: number }): void => {
      cleanup();
      ws.terminate();
      reject(new MeshError(ErrorCodes.DIAL_FAILED, `${url} answered HTTP ${res.statusCode ?? '?'} instead of a WebSocket upgrade`));
    };
    const onOpen = (): void => {
      cleanup();
      // tunnel traffic is many small latency-sensitive messages: no Nagle delay
      const raw = (ws as unknown as { _socket?: { setNoDelay?: (v: boolean) => void } })._socket;
      raw?.setNoDelay?.(true);
      resolve(ws);
    };
    const cleanup = (): void => {
      ws.off('error', onError);
      ws.off('open', onOpen);
      ws.off('unexpected-response', onUnexpected);
      // terminate() during the upgrade makes ws emit 'error' on the next tick ("closed before the
      // connection was established"); unheard, that is an uncaught exception that kills the agent
      // whenever a peer answers 404 or 503. The caller owns the socket's errors after open.
      if (ws.readyState !== ws.OPEN) ws.on('error', () => undefined);
    };
    ws.on('error', onError);
    ws.on('open', onOpen);
    ws.on('unexpected-response', onUnexpected);
  });
}

/** The URL a peer is dialled at: its advertised endpoint plus the tunnel or join path. */
export function endpointUrl(endpoint: string, path: string): string {
  const url = new URL(endpoint);
  url.pathname = path;
  url.search = '';
  return url.toString();
}
