/** Lambda's limit on one log event: a longer line is cut there, with a marker. */
export const MAX_LINE_BYTES = 256 * 1024;
export const LINE_CUT_MARKER = ' [thaw: line cut at 256 KB]';

export interface CaptureEvents {
  /** A complete line (without its newline), at most MAX_LINE_BYTES of UTF-8. */
  line(message: string): void;
  /** The gate refused output: `bytes` were discarded unread. `first` when this starts a stretch of dropping. */
  dropped(bytes: number, first: boolean): void;
}

/**
 * Splits one output stream of a sandbox (stdout or stderr) into lines, working on bytes: output that the gate
 * refuses (the function is over its log rate) is counted and discarded without being decoded or buffered, and a
 * partial line never grows past MAX_LINE_BYTES. Memory per stream is one partial line at most.
 */
export class OutputCapture {
  private parts: Buffer[] = [];
  private partBytes = 0;
  /** Discard up to the next newline (the rest of a cut line, or of a line whose start was dropped). */
  private skipping = false;
  private dropping = false;

  constructor(private readonly gate: (bytes: number) => boolean, private readonly ev: CaptureEvents, private readonly maxLine = MAX_LINE_BYTES) {}

  write(chunk: Buffer): void {
    if (!this.gate(chunk.length)) {
      // Whatever was gathered of the current line is kept; the rest of that line went with this chunk.
      this.emitPartial();
      this.skipping = true;
      this.ev.dropped(chunk.length, !this.dropping);
      this.dropping = true;
      return;
    }
    this.dropping = false;
    let off = 0;
    while (off < chunk.length) {
      const nl = chunk.indexOf(10, off);
      const end = nl === -1 ? chunk.length : nl;
      if (this.skipping) {
        if (nl === -1) return;
        this.skipping = false;
      } else if (nl !== -1 && this.parts.length === 0 && end - off <= this.maxLine) {
        // The common case: a whole line inside one chunk, decoded straight from it.
        if (end > off) this.ev.line(chunk.toString('utf8', off, end));
      } else {
        this.gather(chunk.subarray(off, end));
        if (nl !== -1 && !this.skipping) this.emitPartial();
        if (nl !== -1) this.skipping = false;
      }
      off = end + 1;
    }
  }

  /** The stream ended: a last line without a newline is still a line. */
  end(): void {
    if (!this.skipping) this.emitPartial();
    this.parts = [];
    this.partBytes = 0;
  }

  private gather(piece: Buffer): void {
    if (piece.length === 0) return;
    const room = this.maxLine - this.partBytes;
    if (piece.length <= room) {
      // Copied: a slice would keep the whole chunk it came from alive.
      this.parts.push(Buffer.from(piece));
      this.partBytes += piece.length;
      return;
    }
    const marker = Buffer.from(LINE_CUT_MARKER);
    const all = Buffer.concat([...this.parts, piece.subarray(0, Math.max(0, room))]);
    this.parts = [];
    this.partBytes = 0;
    const keep = utf8Prefix(all, this.maxLine - marker.length);
    this.ev.line(`${keep.toString('utf8')}${LINE_CUT_MARKER}`);
    this.skipping = true;
  }

  private emitPartial(): void {
    if (this.parts.length === 0) {
      this.partBytes = 0;
      return;
    }
    const line = this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts);
    this.parts = [];
    this.partBytes = 0;
    this.ev.line(line.toString('utf8'));
  }
}

/** The longest prefix of `b` of at most `n` bytes that does not end inside a UTF-8 sequence. */
function utf8Prefix(b: Buffer, n: number): Buffer {
  if (b.length <= n) return b;
  let end = n;
  // Step back over continuation bytes to the start of the sequence that crosses the cut, and drop it.
  while (end > 0 && ((b[end] as number) & 0xc0) === 0x80) end--;
  return b.subarray(0, end);
}
