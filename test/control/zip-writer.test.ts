import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import yazl from 'yazl';
import { zipDirectory } from '../../src/control/package.js';
import { ZipWriter } from '../../src/control/zip-writer.js';
import { extractZip } from '../../src/control/zip.js';

/** The archive yazl 3 made for zipDirectory's options (what every stored "rebuild" package's CodeSha256 is of). */
function yazlZip(entries: readonly { rel: string; kind: 'dir' | 'file'; mode: number; data?: Buffer }[]): Promise<Buffer> {
  const z = new yazl.ZipFile();
  const common = { mtime: new Date(1980, 0, 1, 0, 0, 0), forceDosTimestamp: true };
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    z.on('error', reject);
    z.outputStream.on('data', (c: Buffer) => chunks.push(c));
    z.outputStream.on('end', () => resolve(Buffer.concat(chunks)));
    for (const e of entries) {
      if (e.kind === 'dir') z.addEmptyDirectory(e.rel, { ...common, mode: e.mode });
      else {
        const data = e.data ?? Buffer.alloc(0);
        // In 64 KiB pieces, as createReadStream gave them.
        const pieces: Buffer[] = [];
        for (let at = 0; at < data.length; at += 65536) pieces.push(data.subarray(at, at + 65536));
        z.addReadStreamLazy(e.rel, { ...common, mode: e.mode, size: data.length }, (cb) => cb(null, Readable.from(pieces)));
      }
    }
    z.end();
  });
}

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'thaw-zipw-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

void test('zipDirectory writes the same bytes yazl wrote (dirs, modes, links, empty, large and compressible files)', async (t) => {
  const src = path.join(await scratch(t), 'src');
  const big = Buffer.alloc(3 * 1024 * 1024, 'const x = 1; // padding padding\n');
  const files: Record<string, { data: Buffer; mode: number }> = {
    'bootstrap': { data: Buffer.from('#!/bin/sh\nexec node index.js\n'), mode: 0o755 },
    'empty.txt': { data: Buffer.alloc(0), mode: 0o644 },
    'index.js': { data: Buffer.from('exports.handler = async () => 42;\n'), mode: 0o644 },
    'lib/big.js': { data: big, mode: 0o644 },
    'lib/random.bin': { data: randomBytes(300_000), mode: 0o644 },
    'données/é.txt': { data: Buffer.from('unicode\n'), mode: 0o644 },
  };
  for (const [rel, f] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(src, rel)), { recursive: true, mode: 0o755 });
    await writeFile(path.join(src, rel), f.data);
    await chmod(path.join(src, rel), f.mode);
  }
  await mkdir(path.join(src, 'lib/empty-dir'), { mode: 0o755 });
  await symlink('lib/big.js', path.join(src, 'link.js'));
  const expected = await yazlZip([
    { rel: 'bootstrap', kind: 'file', mode: 0o100755, data: files['bootstrap']?.data },
    { rel: 'donn\u00e9es', kind: 'dir', mode: 0o40755 },
    { rel: 'donn\u00e9es/\u00e9.txt', kind: 'file', mode: 0o100644, data: files['données/é.txt']?.data },
    { rel: 'empty.txt', kind: 'file', mode: 0o100644, data: Buffer.alloc(0) },
    { rel: 'index.js', kind: 'file', mode: 0o100644, data: files['index.js']?.data },
    { rel: 'lib', kind: 'dir', mode: 0o40755 },
    { rel: 'lib/big.js', kind: 'file', mode: 0o100644, data: big },
    { rel: 'lib/empty-dir', kind: 'dir', mode: 0o40755 },
    { rel: 'lib/random.bin', kind: 'file', mode: 0o100644, data: files['lib/random.bin']?.data },
    { rel: 'link.js', kind: 'file', mode: 0o120777, data: Buffer.from('lib/big.js') },
  ]);
  const zip = await zipDirectory(src);
  assert.ok(zip.equals(expected), 'byte-identical to yazl');
});

void test('past 65,535 entries ZipWriter writes the zip64 end records yazl wrote, and extractZip reads them', async (t) => {
  const n = 66_000;
  const w = new ZipWriter(new Date(1980, 0, 1, 0, 0, 0));
  const started = performance.now();
  for (let i = 0; i < n; i++) await w.file(`f${String(i).padStart(6, '0')}.js`, 0o100644, Buffer.from(`module.exports = ${i};\n`));
  const zip = w.finish();
  const ms = performance.now() - started;
  // End of central directory: counts saturated at 0xffff, preceded by the zip64 record (56 bytes) and locator (20).
  const eocd = zip.length - 22;
  assert.equal(zip.readUInt32LE(eocd), 0x06054b50);
  assert.equal(zip.readUInt16LE(eocd + 8), 0xffff);
  assert.equal(zip.readUInt16LE(eocd + 10), 0xffff);
  const loc = eocd - 20;
  assert.equal(zip.readUInt32LE(loc), 0x07064b50);
  const rec = Number(zip.readBigUInt64LE(loc + 8));
  assert.equal(rec, loc - 56);
  assert.equal(zip.readUInt32LE(rec), 0x06064b50);
  assert.equal(Number(zip.readBigUInt64LE(rec + 32)), n);
  assert.equal(Number(zip.readBigUInt64LE(rec + 48)), zip.readUInt32LE(eocd + 16), 'central directory offset in both records');
  const out = path.join(await scratch(t), 'out');
  const r = await extractZip(zip, out);
  assert.equal(r.files, n);
  assert.equal(r.packagedByThaw, true);
  t.diagnostic(`ZipWriter: ${n} entries in ${Math.round(ms)} ms`);
});
