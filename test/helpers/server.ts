import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { EphemeralStorage } from '../../src/sandbox/ephemeral.js';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '../../src/cli/sha256.js';
import { zipDirectory } from '../../src/control/package.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const CREDS = { accessKeyId: 'AKIATHAWTEST0000001', secretAccessKey: 'thaw-test-secret-key-0000000000000000000' };
export const ROLE = 'arn:aws:iam::000000000000:role/thaw-test';

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  readonly client: LambdaClient;
  readonly proc: ChildProcess;
  output(): string;
  /** Graceful stop (SIGTERM) and wait for exit. */
  stop(): Promise<void>;
  /** kill -9. */
  kill(): Promise<void>;
}

/** Start a real `thaw serve` process on a free port; resolves once it prints its ready line. */
export async function startServer(opts: { dataDir?: string; port?: number; args?: string[]; env?: Record<string, string> } = {}): Promise<RunningServer> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'thaw-test-data-'));
  const proc = spawn(process.execPath, [join(ROOT, 'bin', 'thaw.js'), 'serve', '--port', String(opts.port ?? 0), '--data', dataDir, '--log-level', 'warn', ...(opts.args ?? [])], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', THAW_ACCESS_KEY_ID: CREDS.accessKeyId, THAW_SECRET_ACCESS_KEY: CREDS.secretAccessKey, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`thaw serve did not get ready:\n${out}`)), 30_000);
    const check = (): void => {
      const m = /thaw listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1] as string);
      }
    };
    proc.stdout?.on('data', check);
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`thaw serve exited with ${code}:\n${out}`));
    });
  });
  const client = new LambdaClient({ endpoint: url, region: 'us-east-1', credentials: CREDS, maxAttempts: 1 });
  return {
    url,
    port: Number(new URL(url).port),
    dataDir,
    client,
    proc,
    output: () => out,
    stop: async () => {
      client.destroy();
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await exited;
    },
    kill: async () => {
      client.destroy();
      if (proc.exitCode === null) proc.kill('SIGKILL');
      await exited;
      // What the killed server left mounted (its spare /tmp filesystems) goes, as the next start on this data
      // directory would do: tests that never start one again must not leave loop devices behind.
      if (existsSync(join(dataDir, 'ephemeral'))) await (await EphemeralStorage.open({ dir: join(dataDir, 'ephemeral'), reserveBytes: 0 }))?.close();
    },
  };
}

/** Zip a set of files ({ path: contents }); names ending in '*' are made executable (the '*' is dropped). */
export async function zipFiles(files: Record<string, string | Buffer>): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), 'thaw-test-src-'));
  try {
    for (const [name, content] of Object.entries(files)) {
      const exec = name.endsWith('*');
      const p = join(dir, exec ? name.slice(0, -1) : name);
      mkdirSync(dirname(p), { recursive: true });
      writeFileSync(p, content);
      if (exec) chmodSync(p, 0o755);
    }
    return await zipDirectory(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What an AWS SDK client error carries (Lambda's fields included). */
export interface SdkError { name?: string; message?: string; Reason?: string; retryAfterSeconds?: string; $metadata?: { httpStatusCode?: number } }

/** `p` rejects with the AWS error `name`; `check` looks at the rest of it. */
export async function rejectsWith(p: Promise<unknown>, name: string, check?: (e: SdkError) => void): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    const err = e as SdkError;
    assert.equal(err.name, name, `expected ${name}, got ${err.name}: ${err.message}`);
    check?.(err);
    return true;
  });
}

export const decode = (p: Uint8Array | undefined): unknown => JSON.parse(Buffer.from(p ?? new Uint8Array()).toString('utf8'));

/** Sign a plain HTTP request the way AWS clients do (service lambda), returning the headers to send. */
export async function signedHeaders(url: URL, method = 'GET', body = ''): Promise<Record<string, string>> {
  const signer = new SignatureV4({ service: 'lambda', region: 'us-east-1', credentials: CREDS, sha256: Sha256 });
  const query: Record<string, string> = {};
  url.searchParams.forEach((v, k) => { query[k] = v; });
  const signed = await signer.sign({ method, protocol: 'http:', hostname: url.hostname, port: Number(url.port), path: url.pathname, query, headers: { host: url.host }, body });
  return signed.headers;
}

