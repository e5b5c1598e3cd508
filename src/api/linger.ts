import type { Socket } from 'node:net';

/** How long, and for how many bytes, a closing connection keeps reading what its client still sends. */
const LINGER_MS = 2000;
const LINGER_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Close a connection whose request body was left unread without losing the answer. Destroying a socket with
 * unread bytes makes the kernel reset the connection, and a client still sending its body then sees
 * ECONNRESET instead of the 403 or 413 it was sent. So, once the response is out, the write side is ended and
 * what still arrives is read and dropped (node's HTTP parser discards the rest of the body) for at most
 * LINGER_MS or LINGER_MAX_BYTES, then the socket is destroyed: the lingering close of HTTP/1.1 servers.
 */
export function lingerOnClose(socket: Socket): void {
  const s = socket as Socket & { destroySoon?: () => void };
  // node:http's server ends a `Connection: close` response with socket.destroySoon().
  s.destroySoon = (): void => {
    const start = socket.bytesRead;
    socket.end();
    const cap = setInterval(() => {
      if (socket.bytesRead - start > LINGER_MAX_BYTES) socket.destroy();
    }, 100);
    const stop = setTimeout(() => socket.destroy(), LINGER_MS);
    cap.unref();
    stop.unref();
    socket.once('close', () => {
      clearInterval(cap);
      clearTimeout(stop);
    });
  };
}
