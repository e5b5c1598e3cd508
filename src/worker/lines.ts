import { Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

/** Splits a byte stream into lines (without the newline) and hands each to `onLine`; long lines are cut at 256 KB. */
export class LineSplitter extends Writable {
  private buf = '';
  private readonly decoder = new StringDecoder('utf8');

  constructor(private readonly onLine: (line: string) => void, private readonly maxLine = 256 * 1024) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.buf += this.decoder.write(chunk);
    let i: number;
    while ((i = this.buf.indexOf('\n')) !== -1) {
      this.onLine(this.buf.slice(0, i));
      this.buf = this.buf.slice(i + 1);
    }
    while (this.buf.length > this.maxLine) {
      this.onLine(this.buf.slice(0, this.maxLine));
      this.buf = this.buf.slice(this.maxLine);
    }
    cb();
  }

  override _final(cb: () => void): void {
    this.buf += this.decoder.end();
    if (this.buf.length > 0) this.onLine(this.buf);
    this.buf = '';
    cb();
  }
}
