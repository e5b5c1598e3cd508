/** Run the real `thaw` CLI as a child process, the way a user would. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { CREDS, ROOT } from '../helpers/server.js';

export const THAW_BIN = join(ROOT, 'bin', 'thaw.js');

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment a user of a running server has: where it is and the key pair. */
export function cliEnv(url: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    THAW_ENDPOINT: url,
    THAW_ACCESS_KEY_ID: CREDS.accessKeyId,
    THAW_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
    ...extra,
  };
}

export function spawnThaw(args: readonly string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [THAW_BIN, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
}

export function runThaw(args: readonly string[], env: Record<string, string>, input?: string | Buffer): Promise<RunResult> {
  const child = spawnThaw(args, env);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString('utf8');
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString('utf8');
  });
  child.stdin?.end(input);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
