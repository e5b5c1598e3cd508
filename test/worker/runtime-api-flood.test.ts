import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { CreateFunctionCommand, GetFunctionCommand, InvokeCommand } from '@aws-sdk/client-lambda';
import { ROLE, decode, startServer, zipFiles, type RunningServer } from '../helpers/server.js';

/**
 * Finding 8 of issue 10, end to end: a function attacks the server through its own Runtime API socket (the one
 * its runtime talks to, visible in the sandbox). Thousands of connections, or a few uploads declaring 256 MiB,
 * used to reset every API client and take the server's memory. Now the environment runs into its own budget.
 */
const rootWithBwrap = process.getuid?.() === 0 && existsSync('/usr/bin/bwrap');

const ATTACKER = `
const net = require('net');
const SOCK = '/var/run/thaw/runtime-api.sock';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const open = () => new Promise((resolve) => {
  const s = net.connect(SOCK);
  s.once('connect', () => resolve(s));
  s.once('error', () => resolve(undefined));
  s.on('data', () => {});
});
exports.handler = async (e) => {
  if (e.attack === 'connections') {
    const socks = [];
    let failed = 0;
    for (let i = 0; i < e.n; i++) {
      const s = await open();
      if (s === undefined) failed++; else socks.push(s);
    }
    await sleep(1000);
    const alive = socks.filter((s) => !s.destroyed && !s.readableEnded).length;
    for (const s of socks) s.destroy();
    return { opened: socks.length, failed, alive };
  }
  if (e.attack === 'bodies') {
    const chunk = Buffer.alloc(1024 * 1024, 0x5a);
    const socks = (await Promise.all(Array.from({ length: e.n }, open))).filter(Boolean);
    let sent = 0;
    await Promise.all(socks.map(async (s) => {
      s.write('POST /2018-06-01/runtime/thaw/code-cache HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: ' + (256 * 1024 * 1024 - 1) + '\\r\\n\\r\\n');
      for (let i = 0; i < e.mib && !s.destroyed; i++) {
        if (!s.write(chunk)) await new Promise((r) => { s.once('drain', r); s.once('close', r); });
        sent++;
      }
    }));
    await sleep(500);
    const cut = socks.filter((s) => s.destroyed || s.readableEnded).length;
    for (const s of socks) s.destroy();
    return { conns: socks.length, cut, sentMiB: sent };
  }
  return 'ok';
};`;

/** Resident and peak resident memory of a process, in bytes. */
function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

describe('a function flooding its own Runtime API socket', { skip: rootWithBwrap ? false : 'needs root and /usr/bin/bwrap' }, () => {
  let s: RunningServer;

  before(async () => {
    s = await startServer({ args: ['--driver', 'namespaces', '--no-stem-cells'] });
    await s.client.send(new CreateFunctionCommand({
      FunctionName: 'flood', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', MemorySize: 256, Timeout: 60,
      Code: { ZipFile: await zipFiles({ 'index.js': ATTACKER }) },
    }));
    await s.client.send(new CreateFunctionCommand({
      FunctionName: 'bystander', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler',
      Code: { ZipFile: await zipFiles({ 'index.js': 'exports.handler = async (e) => ({ fine: e.i });' }) },
    }));
    // Both warm before the attacks.
    assert.equal(decode((await s.client.send(new InvokeCommand({ FunctionName: 'flood', Payload: Buffer.from('{}') }))).Payload), 'ok');
    await s.client.send(new InvokeCommand({ FunctionName: 'bystander', Payload: Buffer.from('{"i":0}') }));
  });
  after(async () => {
    await s.stop();
  });

  /** Invoke the bystander and call the control API in a loop until `stop` resolves; every call must succeed. */
  async function bystanderLoop(stop: Promise<unknown>): Promise<number> {
    let done = false;
    void stop.finally(() => { done = true; });
    let calls = 0;
    while (!done) {
      const r = await s.client.send(new InvokeCommand({ FunctionName: 'bystander', Payload: Buffer.from(JSON.stringify({ i: calls })) }));
      assert.deepEqual(decode(r.Payload), { fine: calls });
      await s.client.send(new GetFunctionCommand({ FunctionName: 'bystander' }));
      calls++;
    }
    return calls;
  }

  test('thousands of connections: all but the per-environment cap are closed; API clients and other functions carry on', async (t) => {
    const attack = s.client.send(new InvokeCommand({ FunctionName: 'flood', Payload: Buffer.from('{"attack":"connections","n":3000}') }));
    const calls = await bystanderLoop(attack);
    const r = await attack;
    assert.equal(r.FunctionError, undefined, Buffer.from(r.Payload ?? new Uint8Array()).toString());
    const out = decode(r.Payload) as { opened: number; failed: number; alive: number };
    t.diagnostic(`opened ${out.opened}, failed ${out.failed}, alive after 1 s ${out.alive}; bystander calls during the attack ${calls}`);
    assert.ok(out.alive <= 32, `${out.alive} of the function's ${out.opened} connections stayed open (cap 32)`);
    assert.ok(calls >= 1);
  });

  test('uploads declaring 256 MiB: cut off at the budget; the server stays small; others carry on', async (t) => {
    const pid = s.proc.pid as number;
    const before = memoryOf(pid);
    const attack = s.client.send(new InvokeCommand({ FunctionName: 'flood', Payload: Buffer.from('{"attack":"bodies","n":8,"mib":64}') }));
    let peak = before.rss;
    const sampler = setInterval(() => { peak = Math.max(peak, memoryOf(pid).rss); }, 20);
    const calls = await bystanderLoop(attack);
    clearInterval(sampler);
    const r = await attack;
    assert.equal(r.FunctionError, undefined, Buffer.from(r.Payload ?? new Uint8Array()).toString());
    const out = decode(r.Payload) as { conns: number; cut: number; sentMiB: number };
    assert.ok(out.cut >= out.conns - 1, `only ${out.cut} of ${out.conns} uploads were cut off`);
    const grown = peak - before.rss;
    t.diagnostic(`server RSS ${Math.round(before.rss / 1048576)} MiB before, peak ${Math.round(peak / 1048576)} MiB; ${out.cut}/${out.conns} uploads cut after ${out.sentMiB} MiB sent; bystander calls ${calls}`);
    // Before: the server allocated each declared length and filled it (8 x 64 MiB written = 512 MiB resident).
    assert.ok(grown < 160 * 1024 * 1024, `server RSS grew by ${Math.round(grown / 1048576)} MiB under the attack`);
    assert.ok(calls >= 1);
  });
});
