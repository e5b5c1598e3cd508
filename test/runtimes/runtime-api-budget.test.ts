import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { RuntimeApiServer } from '../../src/sandbox/runtime-api.js';
import type { RuntimeApiLimits } from '../../src/sandbox/rapi-budget.js';
import { TestPort, json, rapi } from './helpers.js';

const NEXT = '/2018-06-01/runtime/invocation/next';
const CODE_CACHE = '/2018-06-01/runtime/thaw/code-cache';
const MiB = 1024 * 1024;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** host and port of a 'host:port' Runtime API address. */
function hostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

function connect(address: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(hostPort(address), () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves when the server has closed the socket (or it errored), with how long that took. */
function closed(s: net.Socket): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    if (s.destroyed) resolve(0);
    s.once('close', () => resolve(performance.now() - t0));
    s.on('error', () => undefined);
    s.on('data', () => undefined);
  });
}

/** One full round trip on a fresh connection: the runtime asks for an event and answers it. */
async function roundTrip(port: TestPort, address: string): Promise<void> {
  const outcome = port.invoke({ n: 1 });
  const next = await rapi(address, 'GET', NEXT);
  assert.equal(next.status, 200);
  const id = String(next.headers['lambda-runtime-aws-request-id']);
  const posted = await rapi(address, 'POST', `/2018-06-01/runtime/invocation/${id}/response`, '{"ok":1}');
  assert.equal(posted.status, 202);
  assert.deepEqual(json(await outcome), { ok: 1 });
}

describe('Runtime API budgets: an environment attacking its own socket', () => {
  const servers: RuntimeApiServer[] = [];
  let n = 0;
  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  async function setup(limits: Partial<RuntimeApiLimits> = {}): Promise<{ server: RuntimeApiServer; attach: () => Promise<{ port: TestPort; address: string; id: string }> }> {
    const server = new RuntimeApiServer({ limits });
    servers.push(server);
    return {
      server,
      attach: async () => {
        const port = new TestPort();
        const id = `env-${++n}`;
        const { address } = await server.attach(id, port, { transport: 'tcp' });
        return { port, address, id };
      },
    };
  }

  test('connections beyond the per-environment cap are closed at once; another environment is untouched', async () => {
    const { attach } = await setup();
    const attacker = await attach();
    const victim = await attach();
    const sockets: net.Socket[] = [];
    const gone: Promise<number>[] = [];
    for (let i = 0; i < 400; i++) {
      const s = await connect(attacker.address).catch(() => undefined);
      if (s === undefined) continue;
      sockets.push(s);
      gone.push(closed(s));
    }
    await sleep(500);
    const open = sockets.filter((s) => !s.destroyed).length;
    assert.ok(open <= 32, `${open} of the attacker's connections are still open (cap 32)`);
    assert.ok(open >= 1, 'the first connections are kept');
    await roundTrip(victim.port, victim.address);
    for (const s of sockets) s.destroy();
    await Promise.all(gone);
    await sleep(300);
    // Its own connections gone, the attacker's runtime can talk again.
    await roundTrip(attacker.port, attacker.address);
  });

  test('a declared Content-Length is never allocated: eight 256 MiB code-cache posts hold almost nothing', async () => {
    const { attach } = await setup();
    const env = await attach();
    const base = process.memoryUsage().arrayBuffers;
    const sockets: net.Socket[] = [];
    for (let i = 0; i < 8; i++) {
      const s = await connect(env.address);
      closed(s).catch(() => undefined);
      s.write(`POST ${CODE_CACHE} HTTP/1.1\r\nHost: x\r\nContent-Length: ${256 * MiB - 1}\r\n\r\n`);
      s.write(Buffer.alloc(4096, 1));
      sockets.push(s);
    }
    await sleep(500);
    const grown = process.memoryUsage().arrayBuffers - base;
    assert.ok(grown < 64 * MiB, `the server holds ${Math.round(grown / MiB)} MiB for 8 stalled bodies (it allocated the declared length)`);
    for (const s of sockets) s.destroy();
  });

  test('bodies over the bytes-in-flight budget close their connection; what is kept stays under the budget', async () => {
    const { attach } = await setup({ maxBytesInFlight: 16 * MiB });
    const env = await attach();
    const victim = await attach();
    const chunk = Buffer.alloc(MiB, 7);
    const sockets = await Promise.all(Array.from({ length: 8 }, () => connect(env.address)));
    const gone = sockets.map((s) => closed(s));
    const base = process.memoryUsage().arrayBuffers;
    let peak = 0;
    const sample = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
    }, 5);
    // Each declares a 200 MiB cache and streams 8 MiB of it: 64 MiB offered against a 16 MiB budget.
    await Promise.all(sockets.map(async (s) => {
      s.write(`POST ${CODE_CACHE} HTTP/1.1\r\nHost: x\r\nContent-Length: ${200 * MiB}\r\n\r\n`);
      for (let i = 0; i < 8 && !s.destroyed; i++) {
        if (!s.write(chunk)) await new Promise((r) => { s.once('drain', r); s.once('close', r); });
      }
    }));
    const closedCount = (await Promise.race([Promise.all(gone).then(() => 8), sleep(5000).then(() => sockets.filter((s) => s.destroyed).length)]));
    clearInterval(sample);
    assert.ok(closedCount >= 5, `only ${closedCount} of 8 over-budget uploads were cut off`);
    // Our own write buffers count here too; what the server keeps is at most its budget of 16 MiB.
    assert.ok(peak < 96 * MiB, `array buffers grew by ${Math.round(peak / MiB)} MiB`);
    for (const s of sockets) s.destroy();
    await roundTrip(victim.port, victim.address);
    // The budget is given back: a normal response fits again.
    await roundTrip(env.port, env.address);
  });

  test('a response body over 6 MB is refused as it streams in, chunked or not', async () => {
    const { attach } = await setup();
    const env = await attach();
    const outcome = env.port.invoke({});
    const next = await rapi(env.address, 'GET', NEXT);
    const id = String(next.headers['lambda-runtime-aws-request-id']);
    const s = await connect(env.address);
    let reply = '';
    s.on('data', (d: Buffer) => { reply += d.toString('latin1'); });
    const gone = closed(s);
    s.write(`POST /2018-06-01/runtime/invocation/${id}/response HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`);
    const piece = Buffer.alloc(MiB, 0x61);
    for (let i = 0; i < 7 && !s.destroyed; i++) s.write(`${piece.length.toString(16)}\r\n${piece.toString('latin1')}\r\n`);
    s.end('0\r\n\r\n');
    for (let i = 0; i < 100 && !/\r\n\r\n/.test(reply); i++) await sleep(50);
    s.destroy();
    await gone;
    assert.match(reply, /^HTTP\/1\.1 413 /);
    const o = await outcome;
    assert.equal(o.kind, 'error');
  });

  test('a request trickled in is cut off by the request timeout; headers by the headers timeout', async () => {
    const { attach } = await setup({ requestTimeoutMs: 1000, headersTimeoutMs: 500 });
    const env = await attach();
    const body = await connect(env.address);
    const bodyGone = closed(body);
    body.write(`POST ${CODE_CACHE} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n`);
    const headers = await connect(env.address);
    const headersGone = closed(headers);
    headers.write('GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n');
    const drip = setInterval(() => {
      if (!body.destroyed) body.write('x');
      if (!headers.destroyed) headers.write('X-A: b\r\n');
    }, 100);
    try {
      // Node checks the deadlines every 5 s: a generous bound.
      const [b, h] = await Promise.all([bodyGone, headersGone]);
      assert.ok(b < 20_000 && h < 20_000, `closed after ${Math.round(b)} and ${Math.round(h)} ms`);
    } finally {
      clearInterval(drip);
    }
  });

  test('an idle connection is closed; a long poll outlives the idle timeout', async () => {
    const { attach } = await setup({ idleTimeoutMs: 300 });
    const env = await attach();
    // The long poll waits 1.5 s, five idle timeouts, for its event.
    const poll = rapi(env.address, 'GET', NEXT);
    await sleep(1500);
    const outcome = env.port.invoke({ late: true });
    const next = await poll;
    assert.equal(next.status, 200);
    assert.deepEqual(JSON.parse(next.body.toString()), { late: true });
    const posted = await rapi(env.address, 'POST', `/2018-06-01/runtime/invocation/${String(next.headers['lambda-runtime-aws-request-id'])}/response`, '1');
    assert.equal(posted.status, 202);
    await outcome;
    // A connection that sends nothing after a request is closed.
    const s = await connect(env.address);
    const gone = closed(s);
    s.write('GET /nope HTTP/1.1\r\nHost: x\r\n\r\n');
    const took = await gone;
    assert.ok(took < 15_000, `idle connection closed after ${Math.round(took)} ms`);
  });

  test('requests over the rate wait for their turn; a pipelined flood closes its connection', async () => {
    const { attach } = await setup({ requestsPerSecond: 50, requestBurst: 10, maxWaiting: 8 });
    const env = await attach();
    const victim = await attach();
    // Sequential requests over the rate are slowed down, not refused.
    const t0 = performance.now();
    for (let i = 0; i < 30; i++) assert.equal((await rapi(env.address, 'GET', '/nope')).status, 404);
    const took = performance.now() - t0;
    assert.ok(took >= 250, `30 requests at 50/s after a burst of 10 took only ${Math.round(took)} ms`);
    // Hundreds of pipelined requests on one connection: it is closed.
    const s = await connect(env.address);
    const gone = closed(s);
    s.write('GET /nope HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(500));
    await gone;
    await roundTrip(victim.port, victim.address);
  });
});
