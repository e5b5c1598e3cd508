import type http from 'node:http';

/**
 * Read a code cache upload (POST /runtime/thaw/code-cache) only when the environment may make one: `limit` is
 * what it may send now (0: it was not asked). A refused or oversized upload is answered at once and its
 * connection closed, without reading the body; an accepted one is gathered as it arrives, never allocated from
 * the declared Content-Length, and cut off as soon as it passes the limit.
 */
export function receiveCodeCache(req: http.IncomingMessage, res: http.ServerResponse, limit: number, done: (body: Buffer) => void): void {
  if (limit <= 0) {
    refuse(res, 403, 'CodeCacheRefused', 'This environment was not asked for a code cache');
    return;
  }
  const declared = req.headers['content-length'];
  if (declared !== undefined && !(Number(declared) <= limit)) {
    refuse(res, 413, 'RequestEntityTooLarge', `A code cache may have at most ${limit} bytes`);
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  const onData = (chunk: Buffer): void => {
    size += chunk.length;
    if (size > limit) {
      over = true;
      chunks.length = 0;
      req.off('data', onData);
      refuse(res, 413, 'RequestEntityTooLarge', `A code cache may have at most ${limit} bytes`);
      return;
    }
    chunks.push(chunk);
  };
  req.on('data', onData);
  req.once('end', () => {
    if (!over) done(Buffer.concat(chunks, size));
  });
}

function refuse(res: http.ServerResponse, status: number, errorType: string, errorMessage: string): void {
  if (res.headersSent || res.destroyed) return;
  const body = Buffer.from(JSON.stringify({ errorMessage, errorType }));
  // The unread body is never drained: the connection ends with this reply.
  res.shouldKeepAlive = false;
  res.writeHead(status, ['Content-Type', 'application/json', 'Content-Length', String(body.length), 'Connection', 'close']);
  res.end(body, () => res.socket?.destroy());
}
