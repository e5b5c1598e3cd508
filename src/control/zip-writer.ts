/**
 * A deterministic zip writer for `thaw deploy` packaging and for rebuilding a stored package's zip from its tree.
 * It writes exactly the bytes yazl 3 wrote for zipDirectory's options (DOS timestamp only, deflate level 6 with
 * a data descriptor for files and links, stored directories, zip64 records only where yazl used them), so every
 * CodeSha256 computed before stays valid, in time linear in the number of entries: yazl looks for its next entry
 * from the start of its list every time one finishes, which took minutes for 100,000 entries.
 */
import { deflateRaw as deflateRawCb, deflateRawSync, crc32 } from 'node:zlib';
import { promisify } from 'node:util';

const deflateRaw = promisify(deflateRawCb);

const VERSION_MADE_BY = (3 << 8) | 63; // unix, spec 6.3
const VERSION_NEEDED = 20;
const VERSION_NEEDED_ZIP64 = 45;
const UTF8 = 1 << 11;
const DATA_DESCRIPTOR = 1 << 3;
const LEVEL = 6;
/** Entries at most this large are compressed on the calling thread; larger ones on the thread pool. */
const SYNC_BYTES = 1024 * 1024;

interface Central {
  readonly name: Buffer;
  readonly flags: number;
  readonly method: number;
  readonly crc: number;
  readonly compressed: number;
  readonly size: number;
  readonly mode: number;
  readonly offset: number;
}

export class ZipWriter {
  private readonly parts: Buffer[] = [];
  private readonly central: Central[] = [];
  private cursor = 0;
  private readonly time: number;
  private readonly date: number;

  /** `mtime` is written as a DOS date and time in local time, as yazl does. */
  constructor(mtime: Date) {
    this.date = (mtime.getDate() & 0x1f) | (((mtime.getMonth() + 1) & 0xf) << 5) | (((mtime.getFullYear() - 1980) & 0x7f) << 9);
    this.time = Math.floor(mtime.getSeconds() / 2) | ((mtime.getMinutes() & 0x3f) << 5) | ((mtime.getHours() & 0x1f) << 11);
  }

  /** `name` without the trailing slash; `mode` the full st_mode (0o40755). */
  directory(name: string, mode: number): void {
    const n = Buffer.from(`${name}/`);
    const offset = this.cursor;
    this.push(this.localHeader(n, UTF8, 0));
    this.central.push({ name: n, flags: UTF8, method: 0, crc: 0, compressed: 0, size: 0, mode, offset });
  }

  /** A regular file or a symbolic link (its target as data), deflated. */
  async file(name: string, mode: number, data: Buffer): Promise<void> {
    const compressed = data.length <= SYNC_BYTES ? deflateRawSync(data, { level: LEVEL }) : await deflateRaw(data, { level: LEVEL });
    const n = Buffer.from(name);
    const flags = UTF8 | DATA_DESCRIPTOR;
    const offset = this.cursor;
    const crc = crc32(data);
    this.push(this.localHeader(n, flags, 8));
    this.push(compressed);
    const zip64 = data.length > 0xfffffffe || compressed.length > 0xfffffffe || offset > 0xfffffffe;
    const dd = Buffer.alloc(zip64 ? 24 : 16);
    dd.writeUInt32LE(0x08074b50, 0);
    dd.writeUInt32LE(crc, 4);
    if (zip64) {
      dd.writeBigUInt64LE(BigInt(compressed.length), 8);
      dd.writeBigUInt64LE(BigInt(data.length), 16);
    } else {
      dd.writeUInt32LE(compressed.length, 8);
      dd.writeUInt32LE(data.length, 12);
    }
    this.push(dd);
    this.central.push({ name: n, flags, method: 8, crc, compressed: compressed.length, size: data.length, mode, offset });
  }

  /** The whole archive: central directory and end records appended. */
  finish(): Buffer {
    const cdStart = this.cursor;
    for (const c of this.central) this.push(centralRecord(c, this.time, this.date));
    const cdSize = this.cursor - cdStart;
    const count = this.central.length;
    const zip64 = count >= 0xffff || cdSize >= 0xffffffff || cdStart >= 0xffffffff;
    if (zip64) {
      const rec = Buffer.alloc(56);
      rec.writeUInt32LE(0x06064b50, 0);
      rec.writeBigUInt64LE(44n, 4);
      rec.writeUInt16LE(VERSION_MADE_BY, 12);
      rec.writeUInt16LE(VERSION_NEEDED_ZIP64, 14);
      rec.writeBigUInt64LE(BigInt(count), 24);
      rec.writeBigUInt64LE(BigInt(count), 32);
      rec.writeBigUInt64LE(BigInt(cdSize), 40);
      rec.writeBigUInt64LE(BigInt(cdStart), 48);
      const loc = Buffer.alloc(20);
      loc.writeUInt32LE(0x07064b50, 0);
      loc.writeBigUInt64LE(BigInt(this.cursor), 8);
      loc.writeUInt32LE(1, 16);
      this.push(rec);
      this.push(loc);
    }
    const eocd = Buffer.alloc(22);
    eocd.writeUInt32LE(0x06054b50, 0);
    eocd.writeUInt16LE(count >= 0xffff ? 0xffff : count, 8);
    eocd.writeUInt16LE(count >= 0xffff ? 0xffff : count, 10);
    eocd.writeUInt32LE(cdSize >= 0xffffffff ? 0xffffffff : cdSize, 12);
    eocd.writeUInt32LE(cdStart >= 0xffffffff ? 0xffffffff : cdStart, 16);
    this.push(eocd);
    return Buffer.concat(this.parts, this.cursor);
  }

  private push(b: Buffer): void {
    this.parts.push(b);
    this.cursor += b.length;
  }

  private localHeader(name: Buffer, flags: number, method: number): Buffer {
    const h = Buffer.alloc(30 + name.length);
    h.writeUInt32LE(0x04034b50, 0);
    h.writeUInt16LE(VERSION_NEEDED, 4);
    h.writeUInt16LE(flags, 6);
    h.writeUInt16LE(method, 8);
    h.writeUInt16LE(this.time, 10);
    h.writeUInt16LE(this.date, 12);
    // crc-32 and sizes: 0 (in the data descriptor for files, and 0 for directories)
    h.writeUInt16LE(name.length, 26);
    name.copy(h, 30);
    return h;
  }
}

function centralRecord(c: Central, time: number, date: number): Buffer {
  const zip64 = c.size > 0xfffffffe || c.compressed > 0xfffffffe || c.offset > 0xfffffffe;
  const extra = zip64 ? 28 : 0;
  const r = Buffer.alloc(46 + c.name.length + extra);
  r.writeUInt32LE(0x02014b50, 0);
  r.writeUInt16LE(VERSION_MADE_BY, 4);
  r.writeUInt16LE(zip64 ? VERSION_NEEDED_ZIP64 : VERSION_NEEDED, 6);
  r.writeUInt16LE(c.flags, 8);
  r.writeUInt16LE(c.method, 10);
  r.writeUInt16LE(time, 12);
  r.writeUInt16LE(date, 14);
  r.writeUInt32LE(c.crc, 16);
  r.writeUInt32LE(zip64 ? 0xffffffff : c.compressed, 20);
  r.writeUInt32LE(zip64 ? 0xffffffff : c.size, 24);
  r.writeUInt16LE(c.name.length, 28);
  r.writeUInt16LE(extra, 30);
  r.writeUInt32LE(((c.mode & 0xffff) << 16) >>> 0, 38);
  r.writeUInt32LE(zip64 ? 0xffffffff : c.offset, 42);
  c.name.copy(r, 46);
  if (zip64) {
    const at = 46 + c.name.length;
    r.writeUInt16LE(0x0001, at);
    r.writeUInt16LE(24, at + 2);
    r.writeBigUInt64LE(BigInt(c.size), at + 4);
    r.writeBigUInt64LE(BigInt(c.compressed), at + 12);
    r.writeBigUInt64LE(BigInt(c.offset), at + 20);
  }
  return r;
}
