import type { Readable } from 'node:stream';
import { OutputCapture } from './capture.js';
import { TailRing } from './tail.js';
import type { LogSink } from './writer.js';

interface Invocation { readonly requestId: string; readonly tail: TailRing; dropped: number }

/**
 * The log of one execution environment. The sandbox's stdout and stderr are read as they come and each line goes
 * straight to the log sink (which stores it in batches, off the invoke path); what stays in memory is the last
 * 4 KB of the current invocation, for LogType=Tail, and of the Init phase, which a cold start's tail begins with.
 * Output over the function's log rate is discarded unread, announced by a marker line and counted in a line
 * before END. Platform lines (INIT_START, START, END, REPORT, errors) are never dropped.
 */
export class EnvironmentLog {
  private initTail = new TailRing();
  private current: Invocation | undefined;
  private droppedOutside = 0;

  /** `owner`: the function and version the environment serves (undefined for a stem cell not yet specialised). */
  constructor(private readonly sink: LogSink, private readonly owner: () => { functionName: string; version: string } | undefined) {}

  /** Read a sandbox's output streams. */
  capture(streams: readonly Readable[]): void {
    const gate = (bytes: number): boolean => {
      const o = this.owner();
      return o === undefined || this.sink.admit(o.functionName, bytes);
    };
    for (const s of streams) {
      const c = new OutputCapture(gate, {
        line: (message) => this.line(message, false),
        dropped: (bytes, first) => this.dropped(bytes, first),
      });
      s.on('data', (chunk: Buffer) => c.write(chunk));
      s.once('end', () => c.end());
    }
  }

  /** A line written by the platform: of the current invocation, or of Init / the environment outside one. */
  platform(message: string): void {
    this.line(message, true);
  }

  /** An invocation starts; a cold start's tail begins with the Init phase's lines. */
  begin(requestId: string, cold: boolean): void {
    this.current = { requestId, tail: cold ? TailRing.from(this.initTail) : new TailRing(), dropped: this.droppedOutside };
    this.droppedOutside = 0;
    if (cold) this.initTail = new TailRing();
  }

  /** The invocation is over: the count of dropped output, then `last` (END, REPORT); answers its tail. */
  end(last: readonly string[]): Buffer {
    const cur = this.current;
    if (cur === undefined) return Buffer.alloc(0);
    if (cur.dropped > 0) this.platform(`[thaw] ${cur.dropped} bytes of log output dropped: the function wrote faster than its log rate`);
    for (const m of last) this.platform(m);
    this.current = undefined;
    return cur.tail.bytes();
  }

  /** The Init phase's tail, for an Init failure's invocation (the ring starts anew). */
  takeInitTail(): TailRing {
    const t = this.initTail;
    this.initTail = new TailRing();
    return t;
  }

  private line(message: string, platform: boolean): void {
    const cur = this.current;
    (cur?.tail ?? this.initTail).line(message);
    const o = this.owner();
    if (o !== undefined) this.sink.write(o.functionName, o.version, { requestId: cur?.requestId ?? null, timestamp: Date.now(), message }, platform);
  }

  private dropped(bytes: number, first: boolean): void {
    if (first) this.platform('[thaw] log output dropped from here: the function writes faster than its log rate');
    if (this.current !== undefined) this.current.dropped += bytes;
    else this.droppedOutside += bytes;
  }
}
