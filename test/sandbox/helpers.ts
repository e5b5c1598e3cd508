import { once } from 'node:events';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExitInfo, Sandbox, SandboxDriver, SandboxLimits, SandboxSpec } from '../../src/sandbox/driver.js';

export const MiB = 1024 * 1024;
export const PATH = '/usr/local/bin:/usr/bin:/bin';
export const LIMITS: SandboxLimits = { memoryBytes: 256 * MiB, pids: 128, cpuShares: 1024, tmpBytes: 16 * MiB };

let seq = 0;
/** A fresh environment id: [a-z0-9-], unique across concurrently running test files. */
export function newId(prefix = 'test'): string {
  return `${prefix}-${process.pid}-${(seq++).toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * A host directory to mount, made readable by the unprivileged sandbox user (mkdtemp makes 0700) and
 * filled with `files`.
 */
export function makeDir(prefix: string, files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text, { mode: 0o644 });
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Accumulates everything a stream produces, and lets a test wait for some text to appear. */
/**
 * A spec builder for shell scripts: `/bin/sh -c script` with the test's PATH and LIMITS, in /var/task bound from
 * `code()` (read at each call: suites make it in before()), or in / when there is no code.
 */
export function shellSpec(prefix: string, code: () => string | undefined = () => undefined): (script: string, over?: Partial<SandboxSpec>) => SandboxSpec {
  return (script, over = {}) => {
    const dir = code();
    return {
      id: newId(prefix),
      mounts: dir === undefined ? [] : [{ host: dir, sandbox: '/var/task' }],
      argv: ['/bin/sh', '-c', script],
      env: { PATH },
      cwd: dir === undefined ? '/' : '/var/task',
      limits: LIMITS,
      ...over,
    };
  };
}

export class Collector {
  text = '';
  readonly ended: Promise<void>;
  private waiters: { needle: string; resolve: () => void }[] = [];

  constructor(stream: Readable) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      this.text += chunk;
      this.waiters = this.waiters.filter((w) => {
        if (!this.text.includes(w.needle)) return true;
        w.resolve();
        return false;
      });
    });
    this.ended = once(stream, 'end').then(() => undefined);
  }

  /** Resolve once `needle` has been seen; reject after `ms` (a hung sandbox fails the test, not the run). */
  async waitFor(needle: string, ms = 30_000): Promise<void> {
    if (this.text.includes(needle)) return;
    const seen = new Promise<void>((resolve) => this.waiters.push({ needle, resolve }));
    await within(seen, ms, `waiting for ${JSON.stringify(needle)}; got ${JSON.stringify(this.text.slice(-500))}`);
  }
}

export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  const ac = new AbortController();
  try {
    return await Promise.race([
      p,
      sleep(ms, undefined, { signal: ac.signal }).then(() => {
        throw new Error(`timed out after ${ms} ms: ${what}`);
      }),
    ]);
  } finally {
    ac.abort();
  }
}

export interface Started {
  readonly sb: Sandbox;
  readonly out: Collector;
  readonly err: Collector;
}

export async function start(driver: SandboxDriver, spec: SandboxSpec): Promise<Started> {
  const sb = await driver.start(spec);
  return { sb, out: new Collector(sb.stdout), err: new Collector(sb.stderr) };
}

export interface Run {
  readonly stdout: string;
  readonly stderr: string;
  readonly exit: ExitInfo;
}

/** Start, wait for the environment to end, destroy, and return what it printed. */
export async function run(driver: SandboxDriver, spec: SandboxSpec, ms = 60_000): Promise<Run> {
  const { sb, out, err } = await start(driver, spec);
  try {
    const exit = await within(sb.exited, ms, `sandbox ${spec.id} to exit`);
    await within(Promise.all([out.ended, err.ended]), 10_000, 'stdout and stderr to end');
    return { stdout: out.text, stderr: err.text, exit };
  } finally {
    await sb.destroy();
  }
}

/** A real HTTP server standing in for the Runtime API: answers every request with its method and path. */
export async function runtimeApiServer(where: { path: string } | { tcp: true }): Promise<{
  server: Server;
  address: string;
  requests: string[];
  close(): Promise<void>;
}> {
  const requests: string[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    requests.push(`${req.method} ${req.url}`);
    res.setHeader('content-type', 'application/json');
    res.setHeader('lambda-runtime-aws-request-id', 'req-1');
    res.end(JSON.stringify({ hello: 'from-runtime-api', path: req.url }));
  });
  if ('path' in where) server.listen(where.path);
  else server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = 'path' in where ? where.path : `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    server,
    address,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
