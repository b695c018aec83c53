import type { Server } from 'node:net';
import { ErrorCodes, MeshError } from '../errors.js';

/**
 * Binds a TCP server (net or http) and resolves with the bound address. A taken port is
 * MESH_ERR_PORT_IN_USE, any other bind failure (address not local, no permission) INVALID_CONFIG;
 * `what` names the listener in the message ("tunnel listener 0.0.0.0:18800: …"). `backlog` is the
 * accept queue (node's default 511; the kernel caps it at net.core.somaxconn).
 */
export function listenTcp(server: Server, host: string, port: number, what: string, backlog?: number): Promise<{ host: string; port: number }> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const code = err.code === 'EADDRINUSE' ? ErrorCodes.PORT_IN_USE : ErrorCodes.INVALID_CONFIG;
      reject(new MeshError(code, `${what} ${host}:${port}: ${err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen({ port, host, ...(backlog === undefined ? {} : { backlog }) }, () => {
      server.off('error', onError);
      const address = server.address();
      if (address === null || typeof address === 'string') return reject(new MeshError(ErrorCodes.INTERNAL, `${what} has no address`));
      resolve({ host: address.address, port: address.port });
    });
  });
}
