import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import yazl from 'yazl';
import { sha256Base64, zipDirectory, type ZipProgress } from '../../src/control/package.js';
import { extractZip, type ExtractLimits } from '../../src/control/zip.js';
import { isThawError, type ErrorCode } from '../../src/util/errors.js';

// ---- helpers -------------------------------------------------------------------------------------------------

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'thaw-zip-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

type Add = (z: yazl.ZipFile) => void;

function buildZip(add: Add): Promise<Buffer> {
  const z = new yazl.ZipFile();
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    z.on('error', reject);
    z.outputStream.on('data', (c: Buffer) => chunks.push(c));
    z.outputStream.on('end', () => resolve(Buffer.concat(chunks)));
    add(z);
    z.end();
  });
}

const file = (name: string, body: string | Buffer, mode = 0o100644): Add => (z) => z.addBuffer(Buffer.from(body), name, { mode });
const link = (name: string, target: string): Add => (z) => z.addBuffer(Buffer.from(target), name, { mode: 0o120777 });
const zipOf = (...adds: Add[]): Promise<Buffer> => buildZip((z) => adds.forEach((a) => a(z)));

/** Rewrites every occurrence of a (safe) name with a hostile one of the same byte length. */
function patchName(zip: Buffer, safe: string, hostile: string): Buffer {
  const from = Buffer.from(safe);
  const to = Buffer.from(hostile);
  assert.equal(from.length, to.length);
  const out = Buffer.from(zip);
  let n = 0;
  for (let i = out.indexOf(from); i !== -1; i = out.indexOf(from, i + 1), n++) to.copy(out, i);
  assert.ok(n >= 2, 'name found in local header and central directory');
  return out;
}

/** Calls fn with the offsets of each central directory record and its local header, to patch `out` in place. */
function eachEntry(out: Buffer, fn: (central: number, local: number) => void): void {
  const eocd = out.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  let at = out.readUInt32LE(eocd + 16);
  for (let i = 0; i < out.readUInt16LE(eocd + 10); i++) {
    assert.equal(out.readUInt32LE(at), 0x02014b50);
    fn(at, out.readUInt32LE(at + 42));
    at += 46 + out.readUInt16LE(at + 28) + out.readUInt16LE(at + 30) + out.readUInt16LE(at + 32);
  }
}

async function tree(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(path.join(root, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${d.name}` : d.name;
    out.push(r);
    if (d.isDirectory()) out.push(...(await tree(root, r)));
  }
  return out.sort();
}

/** Everything about a tree that extraction must preserve: kinds, permission bits, bytes, link targets. */
async function snapshot(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const rel of await tree(root)) {
    const p = path.join(root, rel);
    const st = await lstat(p);
    const mode = (st.mode & 0o777).toString(8);
    if (st.isSymbolicLink()) out[rel] = `link -> ${await readlink(p)}`;
    else if (st.isDirectory()) out[rel] = `dir ${mode}`;
    else out[rel] = `file ${mode} ${sha256Base64(await readFile(p))}`;
  }
  return out;
}

/**
 * Extracts into <scratch>/p/q/out and expects the given error; then nothing may exist but p/q (no out, no
 * temporary sibling, nothing an escaping entry could have reached).
 */
async function assertRejected(t: TestContext, zip: Buffer, code: ErrorCode, limits?: ExtractLimits): Promise<Error> {
  const root = await scratch(t);
  await mkdir(path.join(root, 'p/q'), { recursive: true });
  let caught: unknown;
  await assert.rejects(extractZip(zip, path.join(root, 'p/q/out'), limits), (e) => ((caught = e), true));
  assert.ok(isThawError(caught), `expected a ThawError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.deepEqual(await tree(root), ['p', 'p/q']);
  return caught;
}

// ---- round trip ----------------------------------------------------------------------------------------------

void test('a packaged folder round-trips through extractZip byte for byte, with modes and links', async (t) => {
  const root = await scratch(t);
  const src = path.join(root, 'src');
  const w = async (rel: string, body: string | Buffer, mode = 0o644): Promise<void> => {
    await mkdir(path.dirname(path.join(src, rel)), { recursive: true });
    await writeFile(path.join(src, rel), body);
    await chmod(path.join(src, rel), mode);
  };
  await w('bootstrap', '#!/bin/sh\nexec node index.js\n', 0o755);
  await w('index.js', 'export const handler = async () => 42;\n');
  await w('lib/deep/nested/data.bin', randomBytes(300_000));
  await w('node_modules/pkg/package.json', '{"name":"pkg","bin":"cli.js"}');
  await w('node_modules/pkg/cli.js', '#!/usr/bin/env node\n', 0o755);
  await w('données/é.txt', 'unicode names survive\n');
  await mkdir(path.join(src, 'node_modules/.bin'));
  await symlink('../pkg/cli.js', path.join(src, 'node_modules/.bin/pkg'));
  await symlink(path.join(src, 'lib/deep'), path.join(src, 'deep')); // absolute but inside: stored relative
  await mkdir(path.join(src, 'empty'));
  for (const d of ['lib', 'lib/deep', 'lib/deep/nested', 'node_modules', 'node_modules/pkg', 'node_modules/.bin', 'données', 'empty']) {
    await chmod(path.join(src, d), 0o755);
  }

  const progress: ZipProgress[] = [];
  const zip = await zipDirectory(src, (p) => progress.push(p));
  assert.deepEqual(progress.at(-1), { files: 8, totalFiles: 8, bytes: progress.at(-1)?.bytes });
  assert.ok((progress.at(-1)?.bytes ?? 0) > 300_000);
  assert.equal(sha256Base64(await zipDirectory(src)), sha256Base64(zip), 'packaging is deterministic');

  const out = path.join(root, 'out');
  const result = await extractZip(zip, out);
  assert.equal(result.files, 8);
  const expected = await snapshot(src);
  expected['deep'] = 'link -> lib/deep';
  assert.deepEqual(await snapshot(out), expected);
  assert.equal((await lstat(path.join(out, 'bootstrap'))).mode & 0o777, 0o755);
  assert.equal(await readFile(path.join(out, 'node_modules/.bin/pkg'), 'utf8'), '#!/usr/bin/env node\n');
  assert.deepEqual((await readdir(root)).sort(), ['out', 'src'], 'no temporary directory left');
});

void test('sha256Base64 is the base64 SHA-256 (Lambda CodeSha256)', () => {
  assert.equal(sha256Base64(Buffer.alloc(0)), '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=');
  assert.equal(sha256Base64(Buffer.from('abc')), 'ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=');
});

void test('zipDirectory refuses symbolic links that leave the folder', async (t) => {
  const root = await scratch(t);
  for (const target of ['../outside', '/etc/passwd', 'a/../../x']) {
    const src = path.join(root, `src-${randomBytes(4).toString('hex')}`);
    await mkdir(src);
    await symlink(target, path.join(src, 'l'));
    await assert.rejects(zipDirectory(src), /symbolic link .* outside the folder/);
  }
});

void test('backslash separators from zips made on Windows are honoured', async (t) => {
  const root = await scratch(t);
  const zip = patchName(await zipOf(file('dir_file.txt', 'hi')), 'dir_file.txt', 'dir\\file.txt');
  await extractZip(zip, path.join(root, 'out'));
  assert.equal(await readFile(path.join(root, 'out/dir/file.txt'), 'utf8'), 'hi');
});

void test('symbolic links pointing inside are extracted as links', async (t) => {
  const root = await scratch(t);
  const zip = await zipOf(file('real/f.txt', 'x'), link('up/l', '../real/f.txt'), link('d', 'real'), link('self', '.'));
  const out = path.join(root, 'out');
  await extractZip(zip, out);
  assert.equal(await readlink(path.join(out, 'up/l')), '../real/f.txt');
  assert.equal(await readFile(path.join(out, 'up/l'), 'utf8'), 'x');
  assert.equal(await readFile(path.join(out, 'd/f.txt'), 'utf8'), 'x');
});

// ---- hostile archives ----------------------------------------------------------------------------------------

void test('entries escaping the root are rejected', async (t) => {
  for (const [safe, hostile] of [
    ['aa/x', '../x'],
    ['a/bb/cc/x', 'a/../../x'],
    ['aa_aa_x', '..\\..\\x'],
    ['ok/aa_bb_x', 'ok/..\\..\\x'],
  ] as const) {
    const e = await assertRejected(t, patchName(await zipOf(file(safe, 'evil')), safe, hostile), 'InvalidZipFile');
    assert.match(e.message, /Could not unzip uploaded file/);
    assert.ok(e.message.includes('..'), e.message);
  }
});

void test('absolute entry names are rejected', async (t) => {
  const root = await scratch(t);
  const target = path.join(root, 'abs-evil');
  for (const [safe, hostile] of [
    ['z' + target.slice(1), target],
    ['Cz_x', 'C:\\x'],
  ] as const) {
    await assertRejected(t, patchName(await zipOf(file(safe, 'evil')), safe, hostile), 'InvalidZipFile');
  }
  await assert.rejects(lstat(target), { code: 'ENOENT' });
});

void test('NUL bytes in names are rejected', async (t) => {
  const e = await assertRejected(t, patchName(await zipOf(file('a_b', 'x')), 'a_b', 'a\0b'), 'InvalidZipFile');
  assert.match(e.message, /NUL/);
});

void test('symbolic links leaving the root are rejected', async (t) => {
  for (const adds of [
    [link('l', '../../etc/passwd')],
    [link('l', '/etc/passwd')],
    [link('a/b/l', '../../../x')],
    [link('s', '.'), link('t', 's/..')], // `..` taken after following s leaves the root
    [link('t', 's/..'), link('s', '.')], // same, in the order that only a final check can catch
    [link('a', 'b'), link('b', 'a')], // a loop
  ]) {
    const e = await assertRejected(t, await zipOf(...adds), 'InvalidZipFile');
    assert.match(e.message, /symbolic link/);
  }
});

void test('entries colliding with a symbolic link are rejected', async (t) => {
  for (const adds of [
    [file('sub/keep', 'x'), link('s', 'sub'), file('s/evil', 'written through the link')],
    [link('s', '.'), (z: yazl.ZipFile) => z.addEmptyDirectory('s/')],
    [file('a', 'x'), link('a', 'b')],
    [link('a', 'b'), file('a', 'x')],
    [link('a', 'b'), link('a', 'c')],
  ]) {
    await assertRejected(t, await zipOf(...adds), 'InvalidZipFile');
  }
});

void test('an entry under a path that is a file is rejected', async (t) => {
  await assertRejected(t, await zipOf(file('a', 'x'), file('a/b', 'y')), 'InvalidZipFile');
});

void test('more entries than maxEntries are rejected', async (t) => {
  const adds = Array.from({ length: 11 }, (_, i) => file(`f${i}`, 'x'));
  const e = await assertRejected(t, await zipOf(...adds), 'InvalidZipFile', { maxEntries: 10 });
  assert.match(e.message, /11 entries/);
});

void test('encrypted entries and unknown compression methods are rejected', async (t) => {
  const encrypted = await zipOf(file('secret.txt', 'x'.repeat(100)));
  eachEntry(encrypted, (c, l) => {
    // Traditional PKWARE encryption is general-purpose bit 0, set in both headers.
    for (const o of [c + 8, l + 6]) encrypted.writeUInt16LE(encrypted.readUInt16LE(o) | 1, o);
  });
  assert.match((await assertRejected(t, encrypted, 'InvalidZipFile')).message, /encrypted/);

  const bzip2 = await zipOf(file('b.txt', 'y'.repeat(100)));
  eachEntry(bzip2, (c, l) => {
    bzip2.writeUInt16LE(12, c + 10);
    bzip2.writeUInt16LE(12, l + 8);
  });
  assert.match((await assertRejected(t, bzip2, 'InvalidZipFile')).message, /compression method 12/);
});

function zeros(bytes: number): Readable {
  const chunk = Buffer.alloc(1024 * 1024);
  let left = bytes;
  return new Readable({
    read() {
      const n = Math.min(left, chunk.length);
      left -= n;
      this.push(n > 0 ? chunk.subarray(0, n) : null);
    },
  });
}

void test('a zip bomb over 250 MB unzipped is rejected with Lambda’s message, before anything is inflated', async (t) => {
  const bomb = await buildZip((z) => z.addReadStream(zeros(300 * 1024 * 1024), 'bomb.bin'));
  assert.ok(bomb.length < 1024 * 1024, `bomb is ${bomb.length} bytes`);
  const e = await assertRejected(t, bomb, 'InvalidParameterValue');
  assert.equal(e.message, 'Unzipped size must be smaller than 262144000 bytes');
});

void test('a header that understates the size is caught while inflating', async (t) => {
  const liar = await buildZip((z) => z.addReadStream(zeros(20 * 1024 * 1024), 'liar.bin'));
  eachEntry(liar, (c, l) => {
    liar.writeUInt32LE(1000, c + 24);
    if (liar.readUInt32LE(l + 22) !== 0) liar.writeUInt32LE(1000, l + 22);
  });
  await assertRejected(t, liar, 'InvalidZipFile');
});

void test('the unzipped size limit counts all entries together', async (t) => {
  const zip = await zipOf(file('a', 'x'.repeat(600)), file('b', 'y'.repeat(600)));
  const e = await assertRejected(t, zip, 'InvalidParameterValue', { maxUnzippedBytes: 1000 });
  assert.equal(e.message, 'Unzipped size must be smaller than 1000 bytes');
});

void test('a large entry compressed beyond maxRatio is rejected', async (t) => {
  const zip = await buildZip((z) => z.addReadStream(zeros(5 * 1024 * 1024), 'dense.bin'));
  assert.match((await assertRejected(t, zip, 'InvalidZipFile', { maxRatio: 100 })).message, /ratio/);
});

void test('garbage, truncated and corrupted buffers are InvalidZipFile', async (t) => {
  const good = await zipOf(file('a.txt', 'hello world '.repeat(50)), file('b.txt', 'stored', 0o100644));
  const stored = await buildZip((z) => z.addBuffer(Buffer.from('stored data, not compressed'), 's.txt', { compress: false }));
  const flipped = Buffer.from(stored);
  const at = flipped.indexOf('stored data') + 3;
  flipped.writeUInt8(flipped.readUInt8(at) ^ 0xff, at); // the CRC-32 no longer matches
  for (const buf of [Buffer.alloc(0), randomBytes(4096), good.subarray(0, good.length - 10), good.subarray(0, 40), flipped]) {
    await assertRejected(t, buf, 'InvalidZipFile');
  }
});

void test('an existing destination is refused and left untouched', async (t) => {
  const root = await scratch(t);
  const dest = path.join(root, 'out');
  await mkdir(dest);
  await writeFile(path.join(dest, 'keep'), 'k');
  await assert.rejects(extractZip(await zipOf(file('a', 'x')), dest), (e) => isThawError(e) && e.code === 'Service');
  assert.deepEqual(await tree(root), ['out', 'out/keep']);
});
