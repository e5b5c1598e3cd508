import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from 'node:http';
import { CREDS, ROOT, api } from './lib.js';
import { zipDirectory } from '../src/control/package.js';

export interface BenchServer { url: string; agent: Agent; proc: ChildProcess; stop(): Promise<void> }

/** A real `thaw serve` in its own process, so that client and server do not share an event loop. */
export async function startBenchServer(args: string[] = []): Promise<BenchServer> {
  const data = mkdtempSync(join(tmpdir(), 'thaw-bench-'));
  const proc = spawn(process.execPath, [join(ROOT, 'bin', 'thaw.js'), 'serve', '--port', '0', '--data', data, '--log-level', 'warn', ...args], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', THAW_ACCESS_KEY_ID: CREDS.accessKeyId, THAW_SECRET_ACCESS_KEY: CREDS.secretAccessKey },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /thaw listening on (\S+)/.exec(out);
      if (m) resolve(m[1] as string);
    });
    proc.once('exit', (c) => reject(new Error(`thaw serve exited (${c}): ${out}`)));
  });
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  return {
    url,
    agent,
    proc,
    stop: async () => {
      agent.destroy();
      const done = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await done;
      rmSync(data, { recursive: true, force: true });
    },
  };
}

export async function createFromDir(s: BenchServer, name: string, dir: string, extra: Record<string, unknown> = {}): Promise<void> {
  const zip = await zipDirectory(dir);
  await api(s.agent, s.url, 'POST', '/2015-03-31/functions', {
    FunctionName: name, Runtime: 'nodejs24.x', Role: 'arn:aws:iam::000000000000:role/bench', Handler: 'index.handler',
    Code: { ZipFile: zip.toString('base64') }, MemorySize: 1024, Timeout: 60, ...extra,
  });
}
