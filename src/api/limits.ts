/**
 * Limits of the HTTP front door, in base units. What `thaw serve` is given is compiled here once, with
 * defaults, into a frozen value the server reads.
 */
export interface HttpLimits {
  /** Time a client has to send a whole request (headers and body); past it the connection is answered 408 and closed. */
  readonly requestTimeoutMs: number;
  /** Time a client has to send the request line and headers. */
  readonly headersTimeoutMs: number;
  /** Connections whose current request has not proved who sent it; past it the oldest such connection is closed. */
  readonly maxAnonymousConnections: number;
  /** All connections at once (descriptors). */
  readonly maxConnections: number;
  /** Request body bytes held in memory at once, across all requests. */
  readonly maxBufferedBytes: number;
  /** Of those, bytes of bodies whose signature is not yet verified (or that need none: function URLs, code links). */
  readonly maxUnverifiedBytes: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = Object.freeze({
  requestTimeoutMs: 300_000,
  headersTimeoutMs: 20_000,
  maxAnonymousConnections: 512,
  maxConnections: 4096,
  maxBufferedBytes: 512 * 1024 * 1024,
  // One CreateFunction of the largest zip (~70 MB of base64) from a client that does not declare its payload hash.
  maxUnverifiedBytes: 128 * 1024 * 1024,
});

/** Deepest nesting of JSON accepted in a request body or invoke payload. */
export const MAX_JSON_DEPTH = 1000;

export function httpLimits(o: Partial<HttpLimits> = {}): HttpLimits {
  const l = { ...DEFAULT_HTTP_LIMITS, ...o };
  return Object.freeze({ ...l, headersTimeoutMs: Math.min(l.headersTimeoutMs, l.requestTimeoutMs) });
}

/** A count of bytes shared by requests: taken before a body is held, given back when the request is done. */
export class ByteBudget {
  private used = 0;
  constructor(readonly limit: number) {}

  tryTake(n: number): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used = Math.max(0, this.used - n);
  }

  get inUse(): number {
    return this.used;
  }
}
