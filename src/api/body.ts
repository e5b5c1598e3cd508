import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { ThawError } from '../util/errors.js';
import type { ByteBudget } from './limits.js';
import { MSG_PAYLOAD_MISMATCH } from './sigv4.js';

export interface BodyBudgets {
  /** Every request body held in memory. */
  readonly total: ByteBudget;
  /** Bodies not (yet) covered by a verified signature. */
  readonly unverified: ByteBudget;
}

/**
 * The bytes one request holds in the shared budgets, given back once by `release()` (when its response is
 * done). A hold starts unverified unless the signature was checked before the body; `verified()` moves its
 * bytes out of the unverified budget.
 */
export class BodyHold {
  private total = 0;
  private unverified = 0;
  private released = false;

  constructor(private readonly budgets: BodyBudgets, private unverifiedMode: boolean) {}

  take(n: number): boolean {
    if (this.released || !this.budgets.total.tryTake(n)) return false;
    if (this.unverifiedMode && !this.budgets.unverified.tryTake(n)) {
      this.budgets.total.give(n);
      return false;
    }
    this.total += n;
    if (this.unverifiedMode) this.unverified += n;
    return true;
  }

  verified(): void {
    this.budgets.unverified.give(this.unverified);
    this.unverified = 0;
    this.unverifiedMode = false;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.budgets.total.give(this.total);
    this.budgets.unverified.give(this.unverified);
    this.total = 0;
    this.unverified = 0;
  }
}

export interface ReadBodyOptions {
  /** Largest body accepted (RequestTooLargeException past it). */
  readonly limit: number;
  /** Operation named in the too-large message, as Lambda names it. */
  readonly operation: string;
  readonly hold: BodyHold;
  /** SHA-256 (hex, lower case) the signature declared for the body: a body that hashes otherwise is refused. */
  readonly expectedSha256?: string;
}

/**
 * Stream a request body into memory: refused before reading when its declared length is over the limit or
 * does not fit the shared budgets, cut off as soon as it passes either, hashed while it arrives.
 */
export function readBody(req: IncomingMessage, o: ReadBodyOptions): Promise<{ body: Buffer; sha256: string }> {
  const lengthHeader = req.headers['content-length'];
  const declared = lengthHeader === undefined ? undefined : Number(lengthHeader);
  if (declared !== undefined && declared > o.limit) return Promise.reject(tooLarge(o.limit, o.operation));
  if (declared !== undefined && !o.hold.take(declared)) return Promise.reject(throttled());
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const stop = (err: ThawError | undefined, value?: { body: Buffer; sha256: string }): void => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      req.off('error', onError);
      if (err !== undefined) {
        chunks.length = 0;
        reject(err);
      } else resolve(value as { body: Buffer; sha256: string });
    };
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > o.limit) return stop(tooLarge(o.limit, o.operation));
      if (declared === undefined && !o.hold.take(c.length)) return stop(throttled());
      hash.update(c);
      chunks.push(c);
    };
    const onEnd = (): void => {
      const sha256 = hash.digest('hex');
      if (o.expectedSha256 !== undefined && sha256 !== o.expectedSha256) return stop(new ThawError('InvalidSignature', MSG_PAYLOAD_MISMATCH));
      stop(undefined, { body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size), sha256 });
    };
    const onClose = (): void => stop(new ThawError('InvalidRequestContent', 'The request body ended before its declared length.'));
    const onError = (): void => stop(new ThawError('InvalidRequestContent', 'The request body could not be read.'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
    req.on('error', onError);
  });
}

export const tooLarge = (limit: number, operation: string): ThawError =>
  new ThawError('RequestTooLarge', `Request must be smaller than ${limit} bytes for the ${operation} operation`);

const throttled = (): ThawError =>
  new ThawError('TooManyRequests', 'Too many request bytes are being received at once; retry later.', { Reason: 'CallerRateLimitExceeded' });
