import assert from 'node:assert/strict';
import { createCipheriv, createHmac } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CreateFunctionCommand, GetAccountSettingsCommand, InvokeCommand } from '@aws-sdk/client-lambda';
import yazl from 'yazl';
import { isStoreError } from '../../src/store/errors.js';
import { Sealer, sha256Hex } from '../../src/store/seal.js';
import { ROLE, decode, rejectsWith, startServer } from '../helpers/server.js';
import { cliEnv, runThaw } from '../cli/run.js';
import { SECRET_ENV, makeStore, pseudo } from './helpers.js';

const SECRET = Buffer.from(SECRET_ENV.THAW_STORE_SECRET, 'hex');

/** A chunk sealed as every Thaw before compression sealed it (format 1), written out here from the formula. */
function sealFormat1(plain: Buffer): { locator: string; sealed: Buffer } {
  const key = createHmac('sha256', SECRET).update(Buffer.from(sha256Hex(plain), 'hex')).digest();
  const nonce = createHmac('sha256', key).update('nonce').digest().subarray(0, 12);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  const sealed = Buffer.concat([Buffer.of(1), c.update(plain), c.final(), c.getAuthTag()]);
  return { locator: createHmac('sha256', key).update('locator').digest('hex'), sealed };
}

/** JavaScript-like text: compresses well (brotli and deflate), different in every chunk. */
function compressible(seed: string, n: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let k = 0; size < n; k++) {
    const line = `// ${'='.repeat(2000)} ${seed} line ${k}\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, n);
}

void test('compressible chunks are stored compressed (format 2), incompressible ones as they are, and both read back', async () => {
  const { store, dataDir } = makeStore();
  const text = compressible('a', 2 * 1024 * 1024);
  const random = pseudo('r', 1024 * 1024);
  await store.putBlob('code-zip/text', 'code-zip', text);
  await store.putBlob('code-zip/random', 'code-zip', random);
  const sealer = new Sealer(SECRET);
  const origin = join(dataDir, 'store');
  const file = (h: string): string => { const l = sealer.locator(h); return join(origin, l.slice(0, 2), l); };
  for (const c of store.manifest('code-zip/text')?.chunks ?? []) {
    const sealed = readFileSync(file(c.h));
    assert.equal(sealed[0], 2, 'compressed format');
    assert.ok(sealed.length < c.n / 20, `chunk of ${c.n} stored in ${sealed.length} bytes`);
    assert.equal(c.s, sealed.length, 'the manifest records the stored size');
  }
  for (const c of store.manifest('code-zip/random')?.chunks ?? []) assert.equal(readFileSync(file(c.h))[0], 1, 'not worth compressing');
  assert.deepEqual(await store.readBlob('code-zip/text'), text);
  assert.deepEqual(await store.readBlob('code-zip/random'), random);
  const s = await store.stats();
  assert.equal(s.uniqueBytes, text.length + random.length);
  assert.ok(s.referencedStoredBytes < random.length + text.length / 20, `stored ${s.referencedStoredBytes}`);
  assert.ok(s.compressionRatio > 2.5, `compression ratio ${s.compressionRatio}`);
  assert.equal(store.storedBytesOf(['code-zip']), s.referencedStoredBytes);
});

void test('chunks stored before compression (format 1) still read, and a tampered format byte is refused', async () => {
  const { store, dataDir } = makeStore();
  const data = compressible('old', 700 * 1024);
  await store.putBlob('code-zip/old', 'code-zip', data);
  // Replace every chunk in the origin with the pre-compression sealing of the same plaintext, as an old store has.
  const origin = join(dataDir, 'store');
  let at = 0;
  for (const c of store.manifest('code-zip/old')?.chunks ?? []) {
    const plain = data.subarray(at, at + c.n);
    at += c.n;
    assert.equal(sha256Hex(plain), c.h);
    const { locator, sealed } = sealFormat1(plain);
    const file = join(origin, locator.slice(0, 2), locator);
    assert.equal(readFileSync(file)[0], 2, 'was written compressed');
    writeFileSync(file, sealed);
  }
  assert.equal(at, data.length);
  const fresh = makeStore(dataDir).store; // nothing cached in memory: every chunk comes from the origin
  assert.deepEqual(await fresh.readBlob('code-zip/old'), data);

  const sealer = new Sealer(SECRET);
  const plain = compressible('t', 100_000);
  const sealed = sealer.seal(plain).sealed;
  assert.equal(sealed[0], 2);
  const relabelled = Buffer.from(sealed);
  relabelled[0] = 1;
  assert.throws(() => sealer.open(sha256Hex(plain), relabelled), (e) => isStoreError(e, 'ChunkCorrupt'));
  assert.deepEqual(sealer.open(sha256Hex(plain), sealed), plain);
});

/** 200 files of 1 MiB (209.7 MB), each compressed at 340:1 by deflate: a zip of about 0.6 MB. */
function bombZip(seed: string): Promise<Buffer> {
  const z = new yazl.ZipFile();
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    z.on('error', reject);
    z.outputStream.on('data', (c: Buffer) => chunks.push(c));
    z.outputStream.on('end', () => resolve(Buffer.concat(chunks)));
    z.addBuffer(Buffer.from('exports.handler = async () => require("fs").readdirSync(__dirname + "/data").length;\n'), 'index.js');
    for (let i = 0; i < 200; i++) z.addBuffer(compressible(`${seed} file ${i}`, 1024 * 1024), `data/f${i}.txt`, { compressionLevel: 9 });
    z.end();
  });
}

void test('a 0.6 MB zip inflating to 210 MB is stored in a small fraction of that, counted as stored, and the limit holds', async () => {
  const s = await startServer({ args: ['--code-storage', String(20_000_000)] });
  try {
    const zip = await bombZip('a');
    assert.ok(zip.length < 1024 * 1024, `zip of ${zip.length} bytes`);
    await s.client.send(new CreateFunctionCommand({ FunctionName: 'bomb', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: zip } }));
    const r = await s.client.send(new InvokeCommand({ FunctionName: 'bomb' }));
    assert.equal(r.FunctionError, undefined);
    assert.equal(decode(r.Payload), 200);

    const out = await runThaw(['store', 'stats', '--json'], cliEnv(s.url));
    assert.equal(out.code, 0, out.stderr);
    const st = JSON.parse(out.stdout) as { LogicalBytes: number; UniqueBytes: number; StoredBytes: number; ReferencedStoredBytes: number; CompressionRatio: number; DedupRatio: number };
    assert.ok(st.LogicalBytes >= 200 * 1024 * 1024, `logical ${st.LogicalBytes}`);
    assert.ok(st.StoredBytes < st.LogicalBytes / 50, `stored ${st.StoredBytes} of ${st.LogicalBytes}`);
    assert.ok(st.CompressionRatio > 50, `compression ratio ${st.CompressionRatio}`);
    const human = await runThaw(['store', 'stats'], cliEnv(s.url));
    assert.match(human.stdout, /compression ratio/);

    // The account's code storage counts what is stored (the tree and the zip, both compressed): what the store holds.
    const acct = await s.client.send(new GetAccountSettingsCommand({}));
    const used = acct.AccountUsage?.TotalCodeSize ?? 0;
    assert.ok(used > 0 && used <= st.StoredBytes && used >= st.ReferencedStoredBytes * 0.9, `TotalCodeSize ${used}, stored ${st.StoredBytes}`);
    assert.equal(acct.AccountLimit?.TotalCodeSize, 20_000_000);
    assert.equal(acct.AccountLimit?.CodeSizeUnzipped, 262_144_000);

    // 12 MB of incompressible code (stored as its zip and its tree: 24 MB) goes over the 20 MB limit.
    const big = new yazl.ZipFile();
    const parts: Buffer[] = [];
    const bigZip = await new Promise<Buffer>((resolve) => {
      big.outputStream.on('data', (c: Buffer) => parts.push(c));
      big.outputStream.on('end', () => resolve(Buffer.concat(parts)));
      big.addBuffer(Buffer.from('exports.handler = async () => 1;\n'), 'index.js');
      big.addBuffer(pseudo('big', 12 * 1024 * 1024), 'blob.bin');
      big.end();
    });
    await rejectsWith(s.client.send(new CreateFunctionCommand({ FunctionName: 'big', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: bigZip } })), 'CodeStorageExceededException');
    const after = await s.client.send(new GetAccountSettingsCommand({}));
    assert.equal(after.AccountUsage?.TotalCodeSize, used, 'the refused package is not counted');
  } finally {
    await s.stop();
  }
});
