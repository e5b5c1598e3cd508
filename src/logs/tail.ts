/**
 * The last `size` bytes of an invocation's log (each line followed by a newline), as LogType=Tail returns them:
 * Lambda's X-Amz-Log-Result is the last 4 KB. Memory stays at `size` bytes however much the function writes.
 */
export class TailRing {
  private readonly buf: Buffer;
  /** Bytes written in total; the ring holds the last min(written, size) of them. */
  private written = 0;

  constructor(private readonly size = 4096) {
    this.buf = Buffer.alloc(size);
  }

  /** A ring holding the same bytes as `other` (the Init phase's lines, carried into a cold start's tail). */
  static from(other: TailRing): TailRing {
    const r = new TailRing(other.size);
    r.writeBytes(other.bytes());
    return r;
  }

  line(message: string): void {
    // A line longer than the ring only contributes its end: encode no more of it than can be kept.
    const keep = message.length > this.size ? message.slice(message.length - this.size) : message;
    this.writeBytes(Buffer.from(`${keep}\n`, 'utf8'));
  }

  private writeBytes(b: Buffer): void {
    const src = b.length > this.size ? b.subarray(b.length - this.size) : b;
    let pos = this.written % this.size;
    let off = 0;
    while (off < src.length) {
      const n = Math.min(src.length - off, this.size - pos);
      src.copy(this.buf, pos, off, off + n);
      off += n;
      pos = (pos + n) % this.size;
    }
    this.written += b.length;
  }

  /** The kept bytes in order, starting at a UTF-8 character boundary. */
  bytes(): Buffer {
    if (this.written <= this.size) return Buffer.from(this.buf.subarray(0, this.written));
    const pos = this.written % this.size;
    const out = Buffer.concat([this.buf.subarray(pos), this.buf.subarray(0, pos)]);
    let start = 0;
    while (start < out.length && ((out[start] as number) & 0xc0) === 0x80) start++;
    return out.subarray(start);
  }

  /** Base64, as the X-Amz-Log-Result header carries it. */
  base64(): string {
    return this.bytes().toString('base64');
  }
}
