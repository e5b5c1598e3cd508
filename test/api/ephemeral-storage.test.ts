import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateFunctionCommand, DeleteFunctionCommand, InvokeCommand, type InvokeCommandOutput } from '@aws-sdk/client-lambda';
import { ROLE, decode, signedHeaders, startServer, zipFiles, type RunningServer } from '../helpers/server.js';
import { gone, loopsUnder, mountsUnder } from '../sandbox/ephemeral-helpers.js';

/** EphemeralStorage through the Lambda API: /tmp of the configured size, apart from memory, freed with its environment. */
const usable = process.getuid?.() === 0 && existsSync('/usr/bin/bwrap');
const T = { timeout: 300_000, skip: usable ? false : 'needs root and bubblewrap' };
const MB = 1024 * 1024;

const HANDLER = `
const fs = require('fs');
const crypto = require('crypto');
const envId = () => 'e' + process.env.AWS_LAMBDA_LOG_STREAM_NAME.split(']')[1];
exports.handler = async (e) => {
  const tmpMount = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\\n').find((l) => l.split(' ')[4] === '/tmp') || '';
  const base = { env: envId(), tmpType: tmpMount.split(' - ')[1]?.split(' ')[0] };
  if (e.op === 'fill') {
    const chunk = Buffer.alloc(MB, 'thaw');
    let written = 0, error = null;
    const fd = fs.openSync('/tmp/big', 'w');
    try { for (let i = 0; i < e.mb; i++) written += fs.writeSync(fd, chunk); } catch (err) { error = err.code; } finally { fs.closeSync(fd); }
    const h = crypto.createHash('sha256');
    const buf = Buffer.alloc(MB);
    const rfd = fs.openSync('/tmp/big', 'r');
    let n, read = 0;
    while ((n = fs.readSync(rfd, buf)) > 0) { h.update(buf.subarray(0, n)); read += n; }
    fs.closeSync(rfd);
    fs.unlinkSync('/tmp/big');
    return { ...base, written, read, error, sha: h.digest('hex') };
  }
  if (e.op === 'peek') {
    const seen = fs.readdirSync('/tmp');
    fs.writeFileSync('/tmp/' + envId(), 'mine');
    await new Promise((r) => setTimeout(r, e.ms || 0));
    const s = fs.statfsSync('/tmp');
    return { ...base, seen, sizeBytes: s.blocks * s.bsize };
  }
  return base;
};`.replace(/\bMB\b/g, String(MB));

interface Result { env: string; tmpType?: string; written?: number; read?: number; error?: string | null; sha?: string; seen?: string[]; sizeBytes?: number }

async function create(s: RunningServer, name: string, memoryMb: number, ephemeralMb?: number): Promise<void> {
  await s.client.send(new CreateFunctionCommand({
    FunctionName: name, Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', MemorySize: memoryMb, Timeout: 120,
    ...(ephemeralMb === undefined ? {} : { EphemeralStorage: { Size: ephemeralMb } }),
    Code: { ZipFile: await zipFiles({ 'index.js': HANDLER }) },
  }));
}

async function invoke(s: RunningServer, name: string, payload: unknown): Promise<{ r: InvokeCommandOutput; body: Result }> {
  const r = await s.client.send(new InvokeCommand({ FunctionName: name, Payload: Buffer.from(JSON.stringify(payload)), LogType: 'Tail' }));
  const body = decode(r.Payload) as Result;
  assert.equal(r.FunctionError, undefined, `${JSON.stringify(body)}\n${Buffer.from(r.LogResult ?? '', 'base64').toString()}`);
  return { r, body };
}

async function drain(s: RunningServer, name: string): Promise<void> {
  const url = new URL(`/thaw/v1/functions/${name}/drain`, s.url);
  const res = await fetch(url, { method: 'POST', headers: await signedHeaders(url, 'POST') });
  assert.equal(res.status, 200);
}

/** The loop device still holding environment `env`'s /tmp image, if any. */
const loopsOf = (dir: string, env: string): string[] => loopsUnder(dir).filter((l) => l.includes(`/${env}.img`));

const sha = (bytes: number): string => {
  const h = createHash('sha256');
  const chunk = Buffer.alloc(MB, 'thaw');
  for (let left = bytes; left > 0; left -= MB) h.update(chunk.subarray(0, Math.min(MB, left)));
  return h.digest('hex');
};

describe('EphemeralStorage through the Lambda API', () => {
  let s: RunningServer;
  let dir: string;

  before(async () => {
    if (!usable) return;
    s = await startServer();
    dir = join(s.dataDir, 'ephemeral');
  });
  after(async () => {
    if (usable) await s.stop();
  });

  test('a 128 MB function writes 400 MB to /tmp and reads it back; /tmp is ext4 of about EphemeralStorage.Size', T, async () => {
    await create(s, 'eph-big', 128, 1024);
    const { body } = await invoke(s, 'eph-big', { op: 'fill', mb: 400 });
    assert.equal(body.error, null);
    assert.equal(body.written, 400 * MB);
    assert.equal(body.read, 400 * MB);
    assert.equal(body.sha, sha(400 * MB));
    assert.equal(body.tmpType, 'ext4');
    const peek = (await invoke(s, 'eph-big', { op: 'peek' })).body;
    assert.equal(peek.env, body.env, 'the same environment served again: it was not OOM-killed');
    assert.ok(peek.sizeBytes !== undefined && peek.sizeBytes > 0.97 * 1024 * MB && peek.sizeBytes <= 1024 * MB, String(peek.sizeBytes));
  });

  test('writing past EphemeralStorage.Size fails with ENOSPC in the function, which keeps serving', T, async () => {
    await create(s, 'eph-full', 256, 512);
    const first = (await invoke(s, 'eph-full', { op: 'fill', mb: 600 })).body;
    assert.equal(first.error, 'ENOSPC');
    assert.ok(first.written !== undefined && first.written > 400 * MB && first.written < 512 * MB, String(first.written));
    const again = (await invoke(s, 'eph-full', { op: 'fill', mb: 100 })).body;
    assert.equal(again.env, first.env);
    assert.equal(again.error, null, 'the space came back once the file was deleted');
  });

  test('/tmp does not leak between environments; its image is freed on drain and on DeleteFunction', T, async () => {
    await create(s, 'eph-leak', 128);
    const [a, b] = await Promise.all([invoke(s, 'eph-leak', { op: 'peek', ms: 2000 }), invoke(s, 'eph-leak', { op: 'peek', ms: 2000 })]);
    assert.notEqual(a.body.env, b.body.env, 'two environments');
    assert.deepEqual(a.body.seen, []);
    assert.deepEqual(b.body.seen, []);
    assert.equal(a.body.tmpType, 'ext4');
    await drain(s, 'eph-leak');
    for (const env of [a.body.env, b.body.env]) await gone(`loop device of drained ${env}`, () => loopsOf(dir, env));
    const c = (await invoke(s, 'eph-leak', { op: 'peek' })).body;
    assert.ok(![a.body.env, b.body.env].includes(c.env));
    assert.deepEqual(c.seen, [], 'a new environment starts with an empty /tmp');
    assert.equal(loopsOf(dir, c.env).length, 1, 'the running environment holds its image');
    await s.client.send(new DeleteFunctionCommand({ FunctionName: 'eph-leak' }));
    await gone(`loop device of ${c.env} after DeleteFunction`, () => loopsOf(dir, c.env));
    assert.deepEqual(readdirSync(dir).filter((n) => n.includes(c.env)), []);
  });
});

test('a killed server\'s /tmp filesystems are freed, and its leftovers removed at the next start', T, async () => {
  const s1 = await startServer({ args: ['--no-stem-cells'] });
  const dir = join(s1.dataDir, 'ephemeral');
  let s2: RunningServer | undefined;
  try {
    await create(s1, 'eph-killed', 128);
    const { body } = await invoke(s1, 'eph-killed', { op: 'peek' });
    assert.equal(loopsOf(dir, body.env).length, 1);
    // kill -9 by hand: the helper's kill() would also clean up what this test looks for.
    const exited = once(s1.proc, 'exit');
    s1.proc.kill('SIGKILL');
    await exited;
    // The sandbox dies with the server; the kernel frees its filesystem with the sandbox's mount namespace.
    await gone('loop device of the killed server\'s environment', () => loopsOf(dir, body.env));
    // What a killed server leaves: its spare filesystems, made and mounted, not yet handed to any sandbox.
    const [mounts, files, loops] = [mountsUnder(dir), readdirSync(dir), loopsUnder(dir)];
    assert.ok(mounts.length > 0 && files.some((n) => n.startsWith('spare-')), files.join(' '));
    s2 = await startServer({ dataDir: s1.dataDir, args: ['--no-stem-cells'] });
    assert.deepEqual(mountsUnder(dir).filter((m) => mounts.includes(m)), []);
    assert.deepEqual(readdirSync(dir).filter((n) => files.includes(n)), []);
    await gone('loop devices of the leftovers', () => loopsUnder(dir).filter((l) => loops.includes(l)));
    const after = (await invoke(s2, 'eph-killed', { op: 'peek' })).body;
    assert.deepEqual(after.seen, [], 'the restarted server\'s environment starts with an empty /tmp');
  } finally {
    if (s2 !== undefined) await s2.stop();
    await s1.kill();
  }
});
