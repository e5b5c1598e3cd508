import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash, createHmac } from 'node:crypto';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES = join(ROOT, '..', 'shared', 'fixtures', 'functions');
export const CREDS = { accessKeyId: 'AKIATHAWBENCH000001', secretAccessKey: 'thaw-bench-secret-0000000000000000000000' };

export interface Scenario {
  readonly name: string;
  readonly unit: string;
  readonly samples: number;
  readonly p50: number;
  readonly p99: number;
  readonly [extra: string]: unknown;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

export function summarise(name: string, unit: string, values: readonly number[], extra: Record<string, unknown> = {}): Scenario {
  const sorted = [...values].sort((a, b) => a - b);
  const r = (x: number): number => Math.round(x * 1000) / 1000;
  return { name, unit, samples: sorted.length, p50: r(percentile(sorted, 50)), p99: r(percentile(sorted, 99)), min: r(sorted[0] ?? NaN), max: r(sorted[sorted.length - 1] ?? NaN), ...extra };
}

export function writeResults(file: string, scenarios: readonly Scenario[], meta: Record<string, unknown> = {}): string {
  const out = join(ROOT, 'bench', 'results', file);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), node: process.version, ...meta, scenarios }, null, 2)}\n`);
  return out;
}

/** A fixture copied to bench/.cache and installed (npm install --omit=dev), once. */
export function preparedFixture(name: string): string {
  const dir = join(ROOT, 'bench', '.cache', 'fixtures', name);
  if (!existsSync(join(dir, '.installed'))) {
    mkdirSync(dir, { recursive: true });
    cpSync(join(FIXTURES, name), dir, { recursive: true });
    execFileSync('npm', ['install', '--omit=dev', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: dir, stdio: 'ignore' });
    writeFileSync(join(dir, '.installed'), '');
  }
  return dir;
}

/**
 * SigV4 headers for one request. A signature stays valid for the same request for 15 minutes, so a benchmark
 * signs each distinct request once and replays it: the client's own signing cost stays out of the numbers.
 */
export function signV4(method: string, url: URL, body: Buffer, extraHeaders: Record<string, string> = {}): Record<string, string> {
  const amzDate = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const date = amzDate.slice(0, 8);
  const payloadHash = createHash('sha256').update(body).digest('hex');
  const headers: Record<string, string> = { host: url.host, 'x-amz-date': amzDate, 'x-amz-content-sha256': payloadHash, ...extraHeaders };
  const names = Object.keys(headers).map((h) => h.toLowerCase()).sort();
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v.trim()]));
  const canonicalUri = url.pathname.split('/').map((seg) => encodeURIComponent(seg)).join('/');
  const query = [...url.searchParams].map(([k, v]) => [encodeURIComponent(k), encodeURIComponent(v)]).sort().map(([k, v]) => `${k}=${v}`).join('&');
  const canonical = [method, canonicalUri, query, ...names.map((n) => `${n}:${lower[n]}`), '', names.join(';'), payloadHash].join('\n');
  const scope = `${date}/us-east-1/lambda/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  let key: Buffer = createHmac('sha256', `AWS4${CREDS.secretAccessKey}`).update(date).digest();
  for (const part of ['us-east-1', 'lambda', 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
  const signature = createHmac('sha256', key).update(toSign).digest('hex');
  return { ...headers, authorization: `AWS4-HMAC-SHA256 Credential=${CREDS.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}` };
}

export interface HttpResult { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }

export function send(agent: Agent, method: string, url: URL, body: Buffer, headers: Record<string, string>): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent, headers: { ...headers, 'content-length': String(body.length) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Signed Lambda API call with a JSON body. */
export async function api(agent: Agent, base: string, method: string, path: string, json?: unknown, extraHeaders: Record<string, string> = {}): Promise<HttpResult> {
  const url = new URL(path, base);
  const body = json === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(json));
  const r = await send(agent, method, url, body, signV4(method, url, body, { ...(json === undefined ? {} : { 'content-type': 'application/json' }), ...extraHeaders }));
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.body.toString()}`);
  return r;
}

export const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;
