/**
 * Baseline (b) for bench/cold.ts: Cloudflare's workerd (the open-source Workers runtime, npm package `workerd`),
 * one cold start per request.
 *
 * What "cold" means here:
 *   - Once per fixture, before sampling (the peer's "deploy", like creating a Thaw function): the fixture's
 *     Lambda handler is bundled with esbuild into one ES module worker whose fetch handler calls
 *     `handler({}, context)` and answers with its result as JSON, and a workerd config (capnp) is written.
 *   - Per sample: a fresh `workerd serve` process is spawned (the native binary directly, not a Node launcher),
 *     which parses the config, creates the V8 isolate and compiles and evaluates the worker's module graph (workerd
 *     does that before it listens); the client retries connecting on loopback until the socket accepts, sends one
 *     HTTP request and reads the whole response. Measured: spawn to the last byte of the response. workerd keeps no
 *     code cache or snapshot between processes, so nothing survives from one sample to the next except the OS page
 *     cache (warm for its binary and the bundle, as it is for `node` in baseline (a)). The process is killed and
 *     reaped outside the measurement.
 *   - Node APIs come from workerd's built-in Node.js compatibility (on by default from compatibility date
 *     2026-08-04); built-in modules stay external to the bundle and are loaded through `createRequire`.
 * workerd is installed into bench/.cache/peer (never into the project's package.json) when missing.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { build } from 'esbuild';
import { ROOT, ms } from './lib.js';

export const WORKERD_VERSION = '1.20261117.1';
const COMPATIBILITY_DATE = '2026-11-01';
const PEER_DIR = join(ROOT, 'bench', '.cache', 'peer');

export interface PeerFixture { readonly config: string }
export interface PeerSkip { readonly skip: string }

/** Path of the native workerd binary, installed into bench/.cache/peer from the npm registry when missing. */
export function workerdBinary(): string {
  const candidates = [
    join(PEER_DIR, 'node_modules', '@cloudflare', `workerd-${process.platform}-${process.arch === 'x64' ? '64' : process.arch}`, 'bin', 'workerd'),
    join(PEER_DIR, 'node_modules', 'workerd', 'bin', 'workerd'),
  ];
  const installed = (): boolean => {
    try {
      const pkg = JSON.parse(readFileSync(join(PEER_DIR, 'node_modules', 'workerd', 'package.json'), 'utf8')) as { version?: string };
      return pkg.version === WORKERD_VERSION && candidates.some((c) => existsSync(c));
    } catch {
      return false;
    }
  };
  if (!installed()) {
    mkdirSync(PEER_DIR, { recursive: true });
    execFileSync('npm', ['install', '--prefix', PEER_DIR, `workerd@${WORKERD_VERSION}`, '--no-audit', '--no-fund', '--loglevel=error'], { stdio: 'inherit' });
  }
  const bin = candidates.find((c) => existsSync(c));
  if (bin === undefined) throw new Error(`workerd ${WORKERD_VERSION}: no binary under ${PEER_DIR}`);
  return bin;
}

/** Bundles the fixture (a directory with index.js exporting `handler`) into a worker and writes its config. */
export async function prepareWorkerdFixture(fx: string, dir: string): Promise<PeerFixture> {
  const out = join(PEER_DIR, 'workerd', fx);
  mkdirSync(out, { recursive: true });
  const adapter = [
    `import * as m from ${JSON.stringify(join(dir, 'index.js'))};`,
    'const handler = m.handler ?? m.default.handler;',
    "const context = { awsRequestId: 'bench', getRemainingTimeInMillis: () => 60000 };",
    'export default {',
    '  async fetch() {',
    '    const result = await handler({}, context);',
    "    return new Response(JSON.stringify(result), { headers: { 'content-type': 'application/json' } });",
    '  },',
    '};',
  ].join('\n');
  await build({
    stdin: { contents: adapter, resolveDir: dir, sourcefile: 'adapter.mjs', loader: 'js' },
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'es2022',
    outfile: join(out, 'worker.mjs'),
    logLevel: 'error',
    // Node built-ins stay external; CommonJS code in the bundle requires them through this `require`.
    banner: { js: "import { createRequire as __thawCreateRequire } from 'node:module'; const require = __thawCreateRequire('/worker.mjs');" },
  });
  const config = join(out, 'config.capnp');
  writeFileSync(config, [
    'using Workerd = import "/workerd/workerd.capnp";',
    'const config :Workerd.Config = (',
    '  services = [ (name = "main", worker = .bench) ],',
    '  sockets = [ (name = "http", address = "127.0.0.1:0", http = (), service = "main") ],',
    ');',
    'const bench :Workerd.Worker = (',
    '  modules = [ (name = "worker.mjs", esModule = embed "worker.mjs") ],',
    `  compatibilityDate = "${COMPATIBILITY_DATE}",`,
    ');',
    '',
  ].join('\n'));
  return { config };
}

/** Prepares the fixture and checks it with one cold start; a fixture workerd cannot run comes back as a skip. */
export async function tryPrepareWorkerdFixture(fx: string, dir: string): Promise<PeerFixture | PeerSkip> {
  try {
    const p = await prepareWorkerdFixture(fx, dir);
    await workerdCold(p);
    return p;
  } catch (e) {
    return { skip: `workerd ${WORKERD_VERSION} cannot run fixture ${fx}: ${(e as Error).message}` };
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function get(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', method: 'GET', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

let binary: string | undefined;

/** One cold start: spawn workerd, request as soon as it accepts connections, time spawn to response. */
export async function workerdCold(p: PeerFixture, timeoutMs = 30000): Promise<{ latency: number }> {
  binary ??= workerdBinary();
  const port = await freePort();
  let stderr = '';
  let exited: string | undefined;
  const t0 = process.hrtime.bigint();
  const child = spawn(binary, ['serve', p.config, '--socket-addr', `http=127.0.0.1:${port}`], { env: { PATH: '/usr/bin:/bin' }, stdio: ['ignore', 'ignore', 'pipe'] });
  const gone = new Promise<void>((resolve) => child.once('exit', (code, signal) => { exited = `exited ${code ?? signal}`; resolve(); }));
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  try {
    for (;;) {
      if (exited !== undefined) throw new Error(`workerd ${exited}: ${stderr.trim()}`);
      try {
        const r = await get(port);
        const latency = ms(t0);
        if (r.status !== 200) throw new Error(`workerd answered ${r.status}: ${r.body.slice(0, 500)} ${stderr.trim()}`);
        JSON.parse(r.body);
        return { latency };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ECONNREFUSED') throw e;
      }
      if (ms(t0) > timeoutMs) throw new Error(`workerd did not accept connections in ${timeoutMs} ms: ${stderr.trim()}`);
      await new Promise((r) => setTimeout(r, 1));
    }
  } finally {
    if (exited === undefined) child.kill('SIGKILL');
    await gone;
  }
}
