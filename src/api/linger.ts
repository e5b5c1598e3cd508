import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';

/** How long, and for how many bytes, a closing connection keeps reading what its client still sends. */
const LINGER_MS = 2000;
const LINGER_MAX_BYTES = 16 * 1024 * 1024;

/**
 * End the write side and keep reading and dropping what the client still sends, for at most LINGER_MS or
 * LINGER_MAX_BYTES, then destroy: the lingering close of HTTP/1.1 servers. Destroying a socket with unread
 * bytes makes the kernel reset the connection, and a client still sending its body then sees ECONNRESET
 * instead of the 400, 403 or 413 it was sent.
 */
function linger(socket: Socket): void {
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
}

/** Close a connection whose request body was left unread, after its response, without losing the response. */
export function lingerOnClose(socket: Socket): void {
  // node:http's server ends a `Connection: close` response with socket.destroySoon().
  (socket as Socket & { destroySoon?: () => void }).destroySoon = () => linger(socket);
}

const CLIENT_ERROR_STATUS: Readonly<Record<string, string>> = {
  ERR_HTTP_REQUEST_TIMEOUT: '408 Request Timeout',
  HPE_HEADER_OVERFLOW: '431 Request Header Fields Too Large',
};

/**
 * node:http's 'clientError' (a request the parser refuses, or a request timeout): answer with a status and
 * linger, instead of node's default of writing 400 and destroying at once.
 */
export function answerClientError(err: Error & { code?: string }, stream: Duplex): void {
  const socket = stream as Socket;
  if (!socket.writable || err.code === 'ECONNRESET') {
    socket.destroy();
    return;
  }
  const status = CLIENT_ERROR_STATUS[err.code ?? ''] ?? '400 Bad Request';
  socket.write(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  socket.on('data', () => undefined);
  socket.resume();
  linger(socket);
}
