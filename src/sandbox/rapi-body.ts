import type http from 'node:http';
import type { EnvironmentBudget } from './rapi-budget.js';

/** A body as read: the bytes, or why it was refused. */
export type BodyRead = Buffer | 'too-large' | 'over-budget';

const EMPTY = Buffer.alloc(0);

/**
 * Read a request body from a runtime as it arrives. Nothing is allocated from the declared Content-Length: the
 * chunks are kept as they come, each counted against the route's `limit` and the environment's budget before it
 * is kept. Calls back once:
 * - with the body;
 * - with 'too-large' as soon as the body is known to be over `limit` (declared or counted); the rest is discarded
 *   as it arrives, so the connection stays usable for the runtime's next call;
 * - with 'over-budget' when the environment has no budget left for the next chunk: what was kept is released and
 *   the caller closes the connection.
 * A runtime that hangs up mid-body gets no callback (nobody is left to answer); its bytes are released.
 */
export function readBody(req: http.IncomingMessage, limit: number, budget: EnvironmentBudget, done: (body: BodyRead) => void): void {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    req.resume();
    done('too-large');
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let settled = false;
  const release = (): void => {
    budget.giveBytes(size);
    size = 0;
    chunks.length = 0;
  };
  const finish = (body: BodyRead): void => {
    if (settled) return;
    settled = true;
    done(body);
  };
  req.on('data', (chunk: Buffer) => {
    if (settled) return;
    if (size + chunk.length > limit) {
      release();
      finish('too-large');
      return;
    }
    if (!budget.takeBytes(chunk.length)) {
      release();
      req.pause();
      finish('over-budget');
      return;
    }
    size += chunk.length;
    chunks.push(chunk);
  });
  req.once('end', () => {
    if (settled) return;
    const body = chunks.length === 0 ? EMPTY : chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
    release();
    finish(body);
  });
  // A hang-up mid-body: 'close' without 'end'. After 'end' this finds nothing left to release.
  req.once('close', () => {
    if (!settled) {
      settled = true;
      release();
    }
  });
}
