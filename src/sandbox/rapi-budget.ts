/**
 * What one execution environment may take from the server through its Runtime API. Everything on the other side
 * of that socket is the function's code, so the runtime is an untrusted client: it gets a budget of connections,
 * of request-body bytes held in the server's memory at once, and of requests per second. An environment over its
 * budget gets closed connections and refused bodies; the server and the other environments never notice.
 *
 * Sized so that a real runtime never meets a limit: Thaw's, AWS's runtime interface clients and custom runtimes
 * keep one or two connections; a response or error body is at most 6 MB; a warm environment makes about 3,000
 * requests a second at full tilt (two per invocation, bench/results/warm.json).
 */

export interface RuntimeApiLimits {
  /** Connections open at once; more are closed as they are accepted. */
  readonly maxConnections: number;
  /** Request-body bytes being received at once over all of the environment's connections. */
  readonly maxBytesInFlight: number;
  /** Sustained requests per second; requests over the rate wait for their turn. */
  readonly requestsPerSecond: number;
  /** Requests that may arrive at once before the rate applies. */
  readonly requestBurst: number;
  /** Requests waiting for their turn at once; beyond this the connection that sent one more is closed. */
  readonly maxWaiting: number;
  /** A connection with no request in progress is closed after this long. */
  readonly idleTimeoutMs: number;
  /** A request (headers and body) must have arrived within this long of its first byte. */
  readonly requestTimeoutMs: number;
  /** Its headers within this long. */
  readonly headersTimeoutMs: number;
}

export const DEFAULT_RUNTIME_API_LIMITS: RuntimeApiLimits = Object.freeze({
  maxConnections: 32,
  maxBytesInFlight: 32 * 1024 * 1024,
  requestsPerSecond: 5000,
  requestBurst: 5000,
  maxWaiting: 64,
  idleTimeoutMs: 30_000,
  requestTimeoutMs: 30_000,
  headersTimeoutMs: 10_000,
});

/** One environment's account against its RuntimeApiLimits. */
export class EnvironmentBudget {
  private bytes = 0;
  private tokens: number;
  private refilled: number;
  private waiting = 0;
  /** Times a limit was hit (connections refused, bodies refused, connections closed for waiting requests). */
  readonly refused = { connections: 0, bytes: 0, requests: 0 };

  constructor(private readonly limits: RuntimeApiLimits, private readonly now: () => number = () => performance.now()) {
    this.tokens = limits.requestBurst;
    this.refilled = now();
  }

  /** May one more connection be kept, with `open` already open? */
  admitConnection(open: number): boolean {
    if (open < this.limits.maxConnections) return true;
    this.refused.connections++;
    return false;
  }

  /** Take `n` bytes of body; false (nothing taken) when that would go over the budget. */
  takeBytes(n: number): boolean {
    if (this.bytes + n > this.limits.maxBytesInFlight) {
      this.refused.bytes++;
      return false;
    }
    this.bytes += n;
    return true;
  }

  giveBytes(n: number): void {
    this.bytes = Math.max(0, this.bytes - n);
  }

  get bytesInFlight(): number {
    return this.bytes;
  }

  /**
   * A request arrived: 0 when it may run now, else how many milliseconds it waits for its turn (call
   * `waited()` when it runs), or -1 when too many are waiting already (close its connection).
   */
  admitRequest(): number {
    const t = this.now();
    const rate = this.limits.requestsPerSecond / 1000;
    this.tokens = Math.min(this.limits.requestBurst, this.tokens + (t - this.refilled) * rate);
    this.refilled = t;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    if (this.waiting >= this.limits.maxWaiting) {
      this.refused.requests++;
      return -1;
    }
    // Its token is taken now (the balance goes below zero): later requests queue behind it.
    this.tokens -= 1;
    this.waiting++;
    return Math.max(1, Math.ceil(-this.tokens / rate));
  }

  waited(): void {
    this.waiting = Math.max(0, this.waiting - 1);
  }
}
