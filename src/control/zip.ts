/**
 * Safe extraction of a function's code zip. The archive is untrusted input: every entry name, mode, size and
 * byte is checked, nothing is written outside the target, and the target appears (by one rename) only once the
 * whole archive has been extracted and checked. A failure removes everything it wrote.
 *
 * Errors: anything malformed or hostile is `InvalidZipFile` (naming the entry); a package over the unzipped size
 * limit is `InvalidParameterValue` with Lambda's own message; filesystem failures (disk full, ...) pass through.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, constants as fsc, fchmodSync, mkdirSync, openSync, symlinkSync, writeSync } from 'node:fs';
import { chmod, lstat, mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable, type TransformCallback, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32, inflateRawSync } from 'node:zlib';
import yauzl from 'yauzl';
import { ThawError } from '../util/errors.js';
import { Pace } from '../util/pace.js';

export interface ExtractLimits {
  /** Total bytes of all entries once inflated. Lambda: 250 MB. */
  maxUnzippedBytes?: number;
  maxEntries?: number;
  /** Largest inflated/compressed ratio allowed for an entry of at least RATIO_MIN_BYTES. */
  maxRatio?: number;
}

/**
 * `files` counts regular files and symbolic links (not directories); `unzippedBytes` is their inflated total;
 * `entries` counts every entry. `packagedByThaw`: every entry has the layout zipDirectory writes (made by unix
 * spec 6.3, the fixed 1980-01-01 timestamp, names in ascending order), so rebuilding the zip from the tree may
 * give the same bytes; when false it cannot.
 */
export interface ExtractResult {
  files: number;
  unzippedBytes: number;
  entries: number;
  packagedByThaw: boolean;
}

export const EXTRACT_DEFAULTS: Readonly<Required<ExtractLimits>> = Object.freeze({
  maxUnzippedBytes: 262_144_000,
  maxEntries: 100_000,
  maxRatio: 1000,
});

/** Small files compress absurdly well (a 200 KB file of spaces); the ratio check only applies from this size. */
export const RATIO_MIN_BYTES = 1024 * 1024;
const MAX_LINK_TARGET_BYTES = 4096;
/** Entries up to this size are inflated in memory and written in one step; larger ones are streamed. */
const INLINE_BYTES = 1024 * 1024;
const THAW_MADE_BY = (3 << 8) | 63;
const DOS_1980_01_01 = 1 | (1 << 5);
const MAX_LINK_HOPS = 40; // Linux's MAXSYMLINKS
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

function badZip(reason: string, entry?: string, cause?: unknown): ThawError {
  const trimmed = reason.replace(/\.+$/, '');
  const what = entry === undefined ? trimmed : `entry ${JSON.stringify(entry)} ${trimmed}`;
  return new ThawError('InvalidZipFile', `Could not unzip uploaded file: ${what}.`, entry === undefined ? {} : { entry }, { cause });
}

function tooBig(limit: number): ThawError {
  return new ThawError('InvalidParameterValue', `Unzipped size must be smaller than ${limit} bytes`, { limit });
}

export async function extractZip(zip: Buffer, destDir: string, limits: ExtractLimits = {}): Promise<ExtractResult> {
  const lim = compileLimits(limits);
  const dest = path.resolve(destDir);
  if (await exists(dest)) throw new ThawError('Service', `Extraction target already exists: ${dest}`, { destDir: dest });
  await mkdir(path.dirname(dest), { recursive: true });
  const tmp = `${dest}.tmp-${randomBytes(6).toString('hex')}`;
  await mkdir(tmp, { mode: 0o755 });
  try {
    await chmod(tmp, 0o755);
    const result = await extractInto(zip, tmp, lim);
    // Node has no RENAME_NOREPLACE, and rename() would replace an empty directory, so check again right before.
    if (await exists(dest)) throw new ThawError('Service', `Extraction target already exists: ${dest}`, { destDir: dest });
    await rename(tmp, dest);
    return result;
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

function compileLimits(l: ExtractLimits): Required<ExtractLimits> {
  const out = {
    maxUnzippedBytes: l.maxUnzippedBytes ?? EXTRACT_DEFAULTS.maxUnzippedBytes,
    maxEntries: l.maxEntries ?? EXTRACT_DEFAULTS.maxEntries,
    maxRatio: l.maxRatio ?? EXTRACT_DEFAULTS.maxRatio,
  };
  for (const [k, v] of Object.entries(out)) {
    if (!(v > 0)) throw new TypeError(`extractZip: limit ${k} must be a positive number`);
  }
  return out;
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

async function extractInto(buf: Buffer, root: string, lim: Required<ExtractLimits>): Promise<ExtractResult> {
  const zip = await openZip(buf);
  try {
    if (zip.entryCount > lim.maxEntries) {
      throw badZip(`the archive has ${zip.entryCount} entries, more than the limit of ${lim.maxEntries}`);
    }
    const tree = new Tree(root);
    const budget = { used: 0, limit: lim.maxUnzippedBytes, maxRatio: lim.maxRatio };
    const pace = new Pace();
    let declared = 0;
    let files = 0;
    let seen = 0;
    let packagedByThaw = true;
    let previous = '';
    for (let entry = await nextEntry(zip); entry !== null; entry = await nextEntry(zip)) {
      if (++seen > lim.maxEntries) throw badZip(`the archive has more than ${lim.maxEntries} entries`);
      await pace.breathe();
      const name = entry.fileName;
      if (packagedByThaw) {
        packagedByThaw = entry.versionMadeBy === THAW_MADE_BY && entry.lastModFileTime === 0 && entry.lastModFileDate === DOS_1980_01_01 &&
          name > previous;
        previous = name;
      }
      const parts = splitName(name);
      const mode = (entry.externalFileAttributes >>> 16) & 0xffff;
      const isLink = (mode & S_IFMT) === S_IFLNK;
      if (entry.isEncrypted()) throw badZip('is encrypted, which is not supported', name);
      if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
        throw badZip(`uses compression method ${entry.compressionMethod}; only stored (0) and deflated (8) are supported`, name);
      }
      if (name.endsWith('/')) {
        if (isLink) throw badZip('is a symbolic link with a directory name', name);
        if (parts.length > 0) await tree.directory(parts, name);
        continue;
      }
      if (parts.length === 0) throw badZip('does not name a file', name);
      declared += entry.uncompressedSize;
      if (declared > lim.maxUnzippedBytes) throw tooBig(lim.maxUnzippedBytes);
      if (exceedsRatio(entry.uncompressedSize, entry.compressedSize, lim.maxRatio)) {
        throw badZip(`has a compression ratio above ${lim.maxRatio}:1`, name);
      }
      if (entry.uncompressedSize <= INLINE_BYTES) {
        const data = inflateInline(buf, entry, budget);
        if (isLink) await makeLink(data, parts, tree, name);
        else await writeInline(data, parts, mode, tree, name);
      } else if (isLink) await extractLink(zip, entry, parts, tree, budget);
      else await extractFile(zip, entry, parts, mode, tree, budget);
      files++;
    }
    tree.checkAllLinks();
    return { files, unzippedBytes: budget.used, entries: seen, packagedByThaw };
  } finally {
    zip.close();
  }
}

function openZip(buf: Buffer): Promise<yauzl.ZipFile> {
  const options = { lazyEntries: true, validateEntrySizes: true, decodeStrings: true, strictFileNames: false };
  return new Promise((resolve, reject) => {
    yauzl.fromBuffer(buf, options, (err, zip) => {
      if (err) return reject(badZip(err.message, undefined, err));
      // nextEntry() receives errors while it waits; this keeps any other from becoming an uncaught 'error' event.
      zip.on('error', () => {});
      resolve(zip);
    });
  });
}

function nextEntry(zip: yauzl.ZipFile): Promise<yauzl.Entry | null> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      zip.off('entry', onEntry).off('end', onEnd).off('error', onError);
    };
    const onEntry = (e: yauzl.Entry): void => (done(), resolve(e));
    const onEnd = (): void => (done(), resolve(null));
    const onError = (err: Error): void => (done(), reject(badZip(err.message, undefined, err)));
    zip.on('entry', onEntry).on('end', onEnd).on('error', onError);
    zip.readEntry();
  });
}

/** Lexical checks on an entry name; backslashes count as separators (zips made on Windows use them). */
function splitName(name: string): string[] {
  if (name.includes('\0')) throw badZip('has a NUL byte in its name', name);
  const slashed = name.replace(/\\/g, '/');
  if (slashed.startsWith('/') || /^[a-zA-Z]:/.test(slashed)) throw badZip('has an absolute path', name);
  const parts = slashed.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw badZip('has a path that leaves the extraction directory', name);
  if (parts.some((p) => Buffer.byteLength(p) > 255)) throw badZip('has a path component longer than 255 bytes', name);
  return parts;
}

function exceedsRatio(inflated: number, compressed: number, maxRatio: number): boolean {
  return inflated >= RATIO_MIN_BYTES && inflated > maxRatio * Math.max(compressed, 1);
}

/**
 * A small entry's bytes, inflated in memory from the archive (no stream, no thread-pool round trip), with the same
 * checks as the streamed path: the local header's framing, the real inflated size against the header (never more
 * is inflated than it declares), the package budget, the ratio and the CRC-32.
 */
function inflateInline(buf: Buffer, entry: yauzl.Entry, budget: Budget): Buffer {
  const name = entry.fileName;
  const at = entry.relativeOffsetOfLocalHeader;
  if (at + 30 > buf.length || buf.readUInt32LE(at) !== 0x04034b50) throw badZip('has an invalid local file header', name);
  const start = at + 30 + buf.readUInt16LE(at + 26) + buf.readUInt16LE(at + 28);
  const end = start + entry.compressedSize;
  if (end > buf.length) throw badZip('has data beyond the end of the archive', name);
  const raw = buf.subarray(start, end);
  let data: Buffer;
  if (entry.compressionMethod === 0) {
    if (entry.compressedSize !== entry.uncompressedSize) throw badZip('is stored with a compressed size unlike its size', name);
    data = raw;
  } else {
    try {
      // One byte more than declared is enough to tell that it inflates to more than its header says.
      data = inflateRawSync(raw, { maxOutputLength: entry.uncompressedSize + 1 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw badZip('inflates to more bytes than its header declares', name, e);
      throw badZip(`cannot be read: ${(e as Error).message}`, name, e);
    }
  }
  if (data.length > entry.uncompressedSize) throw badZip('inflates to more bytes than its header declares', name);
  budget.used += data.length;
  if (budget.used > budget.limit) throw tooBig(budget.limit);
  if (data.length !== entry.uncompressedSize) throw badZip('is shorter than its header declares', name);
  if (crc32(data) !== entry.crc32) throw badZip('is corrupt (CRC-32 mismatch)', name);
  return data;
}

/** O_NOFOLLOW: even a bug elsewhere cannot make this write go through a symbolic link. */
const WRITE_FLAGS = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW;

async function writeInline(data: Buffer, parts: string[], unixMode: number, tree: Tree, name: string): Promise<void> {
  const file = await tree.claimFile(parts, name);
  const mode = unixMode & 0o111 ? 0o755 : 0o644;
  const fd = openSync(file, WRITE_FLAGS, mode);
  try {
    fchmodSync(fd, mode); // the umask may have narrowed it
    for (let at = 0; at < data.length; ) at += writeSync(fd, data, at);
  } finally {
    closeSync(fd);
  }
}

interface Budget {
  used: number;
  readonly limit: number;
  readonly maxRatio: number;
}

/**
 * Counts the bytes really inflated (never trusting the header) against the package budget and the entry's
 * declared size and ratio, and checks the CRC-32, which yauzl does not.
 */
class EntryGuard extends Transform {
  private bytes = 0;
  private crc = 0;

  constructor(
    private readonly entry: yauzl.Entry,
    private readonly budget: Budget,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, cb: TransformCallback): void {
    const { entry, budget } = this;
    this.bytes += chunk.length;
    budget.used += chunk.length;
    if (budget.used > budget.limit) return cb(tooBig(budget.limit));
    if (this.bytes > entry.uncompressedSize) return cb(badZip('inflates to more bytes than its header declares', entry.fileName));
    if (exceedsRatio(this.bytes, entry.compressedSize, budget.maxRatio)) {
      return cb(badZip(`has a compression ratio above ${budget.maxRatio}:1`, entry.fileName));
    }
    this.crc = crc32(chunk, this.crc);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.bytes !== this.entry.uncompressedSize) return cb(badZip('is shorter than its header declares', this.entry.fileName));
    if (this.crc !== this.entry.crc32) return cb(badZip('is corrupt (CRC-32 mismatch)', this.entry.fileName));
    cb();
  }
}

/** Runs the entry's data through `sink`; errors of the zip's own stream become InvalidZipFile. */
async function pumpEntry(
  zip: yauzl.ZipFile,
  entry: yauzl.Entry,
  budget: Budget,
  sink: Writable | ((source: AsyncIterable<Buffer>) => Promise<void>),
): Promise<void> {
  const source = await new Promise<Readable>((resolve, reject) => {
    zip.openReadStream(entry, (err, stream) => (err ? reject(badZip(err.message, entry.fileName, err)) : resolve(stream)));
  }).catch((e: unknown) => {
    if (typeof sink !== 'function') sink.destroy();
    throw e;
  });
  let sourceError: unknown;
  source.on('error', (e) => (sourceError ??= e));
  try {
    await pipeline(source, new EntryGuard(entry, budget), sink);
  } catch (e) {
    if (e instanceof ThawError) throw e;
    if (e === sourceError) throw badZip(`cannot be read: ${(e as Error).message}`, entry.fileName, e);
    throw e;
  }
}

async function extractFile(
  zip: yauzl.ZipFile,
  entry: yauzl.Entry,
  parts: string[],
  unixMode: number,
  tree: Tree,
  budget: Budget,
): Promise<void> {
  const file = await tree.claimFile(parts, entry.fileName);
  const mode = unixMode & 0o111 ? 0o755 : 0o644;
  const handle = await open(file, WRITE_FLAGS, mode);
  let sink: Writable;
  try {
    await handle.chmod(mode); // the umask may have narrowed it
    sink = handle.createWriteStream(); // closes the handle when it finishes or is destroyed
  } catch (e) {
    await handle.close();
    throw e;
  }
  await pumpEntry(zip, entry, budget, sink);
}

async function extractLink(zip: yauzl.ZipFile, entry: yauzl.Entry, parts: string[], tree: Tree, budget: Budget): Promise<void> {
  const name = entry.fileName;
  if (entry.uncompressedSize > MAX_LINK_TARGET_BYTES) throw badZip('is a symbolic link with an over-long target', name);
  const chunks: Buffer[] = [];
  await pumpEntry(zip, entry, budget, async (source) => {
    for await (const chunk of source) chunks.push(chunk);
  });
  await makeLink(Buffer.concat(chunks), parts, tree, name);
}

async function makeLink(data: Buffer, parts: string[], tree: Tree, name: string): Promise<void> {
  const target = data.toString('utf8');
  if (target === '' || target.includes('\0')) throw badZip('is a symbolic link with an empty or NUL-containing target', name);
  if (target.startsWith('/') || /^[a-zA-Z]:/.test(target) || target.includes('\\')) {
    throw badZip(`is a symbolic link to an absolute or non-POSIX path (${JSON.stringify(target)})`, name);
  }
  symlinkSync(target, await tree.claimLink(parts, target, name));
}

type Kind = 'file' | 'dir' | 'link';

/**
 * What has been extracted so far, by normalised path. Keeps every write on a path made only of directories this
 * extraction created, so nothing is ever written through a symbolic link or onto one.
 */
class Tree {
  private readonly kinds = new Map<string, Kind>();
  private readonly links = new Map<string, string>();

  constructor(private readonly root: string) {}

  async directory(parts: string[], name: string): Promise<void> {
    await this.parents(parts, name);
    const kind = this.kinds.get(parts.join('/'));
    if (kind === 'dir') return;
    if (kind !== undefined) throw collision(kind, name);
    await this.mkdir(parts);
  }

  async claimFile(parts: string[], name: string): Promise<string> {
    await this.parents(parts, name);
    const key = parts.join('/');
    const kind = this.kinds.get(key);
    // A repeated file entry replaces the earlier one (as unzip -o does); any other repeat is refused.
    if (kind !== undefined && kind !== 'file') throw collision(kind, name);
    this.kinds.set(key, 'file');
    return this.abs(parts);
  }

  async claimLink(parts: string[], target: string, name: string): Promise<string> {
    await this.parents(parts, name);
    const key = parts.join('/');
    const kind = this.kinds.get(key);
    if (kind !== undefined) throw collision(kind, name, true);
    this.kinds.set(key, 'link');
    this.links.set(key, target);
    if (!symlinkStaysInside(parts, target, this.links)) throw linkOutside(key, target);
    return this.abs(parts);
  }

  /** Links added later can change where an earlier one leads (`a -> b/..` once `b -> .` exists): check all again. */
  checkAllLinks(): void {
    for (const [key, target] of this.links) {
      if (!symlinkStaysInside(key.split('/'), target, this.links)) throw linkOutside(key, target);
    }
  }

  private async parents(parts: string[], name: string): Promise<void> {
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i);
      const kind = this.kinds.get(prefix.join('/'));
      if (kind === 'dir') continue;
      if (kind === 'link') throw badZip(`lies under ${JSON.stringify(prefix.join('/'))}, which is a symbolic link`, name);
      if (kind === 'file') throw badZip(`lies under ${JSON.stringify(prefix.join('/'))}, which is a file`, name);
      await this.mkdir(prefix);
    }
  }

  private async mkdir(parts: string[]): Promise<void> {
    const dir = this.abs(parts);
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    this.kinds.set(parts.join('/'), 'dir');
  }

  private abs(parts: string[]): string {
    const p = path.resolve(this.root, ...parts);
    if (!p.startsWith(this.root + path.sep)) throw badZip('has a path that leaves the extraction directory', parts.join('/'));
    return p;
  }
}

function collision(existing: Kind, name: string, isLink = false): ThawError {
  const what = existing === 'link' || isLink ? 'a symbolic link' : `an entry of another type (${existing})`;
  return badZip(`is a duplicate that collides with ${what} of the same name`, name);
}

function linkOutside(key: string, target: string): ThawError {
  return badZip(`is a symbolic link whose target ${JSON.stringify(target)} resolves outside the function's code (or loops)`, key);
}

/**
 * Whether following the relative link at `linkPath` (path components under the root) to `target` stays inside
 * the root, resolving as the kernel does: through the other links in `links` (keyed by '/'-joined components),
 * so `..` after a link is taken from where the link leads. Components not in `links` count as directories.
 * Loops and chains longer than Linux allows are refused.
 */
export function symlinkStaysInside(linkPath: readonly string[], target: string, links: ReadonlyMap<string, string>): boolean {
  const at = linkPath.slice(0, -1);
  let pending = target.split('/');
  let hops = 0;
  for (let c = pending.shift(); c !== undefined; c = pending.shift()) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (at.length === 0) return false;
      at.pop();
      continue;
    }
    at.push(c);
    const next = links.get(at.join('/'));
    if (next === undefined) continue;
    if (++hops > MAX_LINK_HOPS || next.startsWith('/')) return false;
    at.pop();
    pending = [...next.split('/'), ...pending];
  }
  return true;
}
