/**
 * Fuzzing the HTTP layer and the JSON schemas: a few thousand generated requests, malformed in method, path,
 * escapes, headers and body (truncated, deep, huge, invalid UTF-8, wrong JSON types), signed, forged and
 * unsigned, against every route. None may answer 500 or crash the server. Seeded: a failure names its seed
 * and request number, and THAW_FUZZ_SEED=<seed> replays it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { CreateFunctionCommand, CreateFunctionUrlConfigCommand, ListFunctionsCommand } from '@aws-sdk/client-lambda';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '../../src/cli/sha256.js';
import { CREDS, ROLE, startServer, zipFiles, type RunningServer } from '../helpers/server.js';
import { parseResponse, type RawResponse } from '../helpers/raw-http.js';
import { prng } from '../../bench/keepalive-sim.js';

const SEED = Number(process.env.THAW_FUZZ_SEED ?? 0x7ea5e1);
const REQUESTS = 3000;
const PARALLEL = 8;


interface Case {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  /** 'good' | 'forged' | 'none' */
  auth: string;
  /** Content-Length larger than the body sent, then the client stops writing. */
  truncated: boolean;
}

const ROUTES: Array<[string, string]> = [
  ['POST', '/2015-03-31/functions'], ['GET', '/2015-03-31/functions'], ['GET', '/2015-03-31/functions/{F}'],
  ['DELETE', '/2015-03-31/functions/{F}'], ['GET', '/2015-03-31/functions/{F}/configuration'],
  ['PUT', '/2015-03-31/functions/{F}/configuration'], ['PUT', '/2015-03-31/functions/{F}/code'],
  ['POST', '/2015-03-31/functions/{F}/versions'], ['GET', '/2015-03-31/functions/{F}/versions'],
  ['POST', '/2015-03-31/functions/{F}/invocations'], ['POST', '/2015-03-31/functions/{F}/aliases'],
  ['GET', '/2015-03-31/functions/{F}/aliases/{A}'], ['PUT', '/2015-03-31/functions/{F}/aliases/{A}'],
  ['POST', '/2017-03-31/tags/{R}'], ['DELETE', '/2017-03-31/tags/{R}'], ['GET', '/2017-03-31/tags/{R}'],
  ['PUT', '/2017-10-31/functions/{F}/concurrency'], ['PUT', '/2019-09-30/functions/{F}/provisioned-concurrency'],
  ['PUT', '/2019-09-25/functions/{F}/event-invoke-config'], ['POST', '/2019-09-25/functions/{F}/event-invoke-config'],
  ['GET', '/2019-09-25/functions/{F}/event-invoke-config/list'], ['POST', '/2021-10-31/functions/{F}/url'],
  ['PUT', '/2021-10-31/functions/{F}/url'], ['GET', '/2021-10-31/functions/{F}/urls'],
  ['POST', '/2018-10-31/layers/{L}/versions'], ['GET', '/2018-10-31/layers'], ['GET', '/2018-10-31/layers/{L}/versions/{N}'],
  ['GET', '/2016-08-19/account-settings'], ['GET', '/thaw/v1/functions/{F}/logs'], ['POST', '/thaw/v1/functions/{F}/drain'],
  ['GET', '/thaw/v1/metrics'], ['GET', '/thaw/v1/store/stats'], ['GET', '/thaw/v1/code/{S}.zip'], ['GET', '/lambda-url/{U}/{P}'],
  ['POST', '/lambda-url/{U}/{P}'], ['GET', '/console/'], ['GET', '/'],
];

const FIELDS = ['FunctionName', 'Runtime', 'Role', 'Handler', 'Code', 'ZipFile', 'Timeout', 'MemorySize', 'Environment', 'Variables',
  'Layers', 'Publish', 'Description', 'Name', 'FunctionVersion', 'RoutingConfig', 'AdditionalVersionWeights', 'Tags',
  'ReservedConcurrentExecutions', 'ProvisionedConcurrentExecutions', 'MaximumRetryAttempts', 'DestinationConfig', 'OnFailure',
  'Destination', 'AuthType', 'Cors', 'AllowOrigins', 'InvokeMode', 'Content', 'CompatibleRuntimes', 'RevisionId', 'DryRun',
  'EphemeralStorage', 'Size', 'SnapStart', 'ApplyOn', 'DeadLetterConfig', 'TargetArn', 'Architectures', 'PackageType'];

function generator(seed: number, urlId: string): () => Case {
  const r = prng(seed);
  const int = (n: number): number => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
  const name = (): string => pick([
    'fz', 'fz', 'nope', 'fz:1', 'fz:$LATEST', 'fz%3Aprod', 'arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Afz',
    '%', '%zz', '%E0%A4%A', '%FF%FE', '%C0%AF', '%00', '..', '.', 'a'.repeat(int(3000)), '%F0%9F%98%80', encodeURIComponent(bytes(8).toString('latin1')),
    '%25', 'x%2Fy', '\u00e9', '{F}', '',
  ]);
  const value = (depth = 0): unknown => {
    switch (int(depth > 3 ? 7 : 10)) {
      case 0: return null;
      case 1: return int(3) === 0 ? -1 : r() * 1e12;
      case 2: return r() < 0.5;
      case 3: return pick(['', 'fz', 'nodejs24.x', 'index.handler', 'NONE', 'AWS_IAM', '$LATEST', 'UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==', 'x'.repeat(int(70_000))]);
      case 4: return bytes(int(40)).toString('latin1');
      case 5: return Number.MAX_SAFE_INTEGER * 4;
      case 6: return '\ud800';
      case 7: return Array.from({ length: int(4) }, () => value(depth + 1));
      default: {
        const o: Record<string, unknown> = {};
        for (let i = int(6); i > 0; i--) o[int(8) === 0 ? bytes(4).toString('latin1') : pick(FIELDS)] = value(depth + 1);
        return o;
      }
    }
  };
  const body = (): { body: Buffer; truncated: boolean } => {
    switch (int(12)) {
      case 0: return { body: Buffer.alloc(0), truncated: false };
      case 1: { const t = JSON.stringify(value()); return { body: Buffer.from(t.slice(0, int(t.length + 1))), truncated: false }; }
      case 2: { const d = pick([100, 999, 1001, 5000, 100_000]); return { body: Buffer.from(`${'['.repeat(d)}${']'.repeat(d)}`), truncated: false }; }
      case 3: { const d = pick([1000, 1001, 20_000]); return { body: Buffer.from(`{"FunctionName":${'{"a":'.repeat(d)}1${'}'.repeat(d)}}`), truncated: false }; }
      case 4: return { body: bytes(int(2000)), truncated: false };
      case 5: return { body: Buffer.concat([Buffer.from('{"FunctionName":"'), bytes(50), Buffer.from('"}')]), truncated: false };
      case 6: return { body: Buffer.alloc(pick([16 * 1024 + 1, 1024 * 1024 + 1, 2 * 1024 * 1024]), 0x7b), truncated: false };
      case 7: return { body: Buffer.from(JSON.stringify(value())), truncated: true };
      case 8: return { body: Buffer.from(pick(['"just a string"', '42', 'null', 'true', '[]', '{}', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{}}}'])), truncated: false };
      default: return { body: Buffer.from(JSON.stringify(value())), truncated: false };
    }
  };
  const query = (): string => {
    if (int(3) !== 0) return '';
    const keys = ['Qualifier', 'MaxItems', 'Marker', 'FunctionVersion', 'tagKeys', 'afterSeq', 'limit', 'since', 'expires', 'signature', 'X-Amz-Signature', '%', 'a%zz'];
    const vals = ['1', '-1', '0', '99999999999999999999', '$LATEST', '%', '%zz', 'ALL', '', 'a+b', 'x'.repeat(int(5000)), '%FF'];
    return `?${Array.from({ length: 1 + int(3) }, () => `${pick(keys)}=${pick(vals)}`).join('&')}`;
  };
  return () => {
    const [routeMethod, template] = pick(ROUTES);
    const method = int(8) === 0 ? pick(['PATCH', 'OPTIONS', 'HEAD', 'PROPFIND', 'G-T', 'GET', 'TRACE']) : routeMethod;
    const path = template
      .replace('{F}', name).replace('{A}', name).replace('{R}', name).replace('{L}', name).replace('{N}', () => pick(['1', '0', '-1', 'x', '99999999999999999999']))
      .replace('{S}', () => pick(['0'.repeat(64), 'zz', '%'])).replace('{U}', () => pick([urlId, urlId, 'f'.repeat(32), '%'])).replace('{P}', name) + query();
    const headers: Record<string, string> = {};
    if (int(6) === 0) headers['x-amz-invocation-type'] = pick(['Event', 'DryRun', 'RequestResponse', 'event', '', 'x'.repeat(300)]);
    if (int(6) === 0) headers['x-amz-log-type'] = pick(['Tail', 'None', 'tail', '']);
    if (int(8) === 0) headers['x-amz-client-context'] = pick(['', 'e30=', 'bm90IGpzb24=', '%%%', Buffer.from(`${'['.repeat(5000)}`).toString('base64'), 'W10=']);
    if (int(6) === 0) headers['content-type'] = pick(['application/json', 'text/plain', 'application/x-amz-json-1.1', 'multipart/form-data; boundary=x', '']);
    if (int(10) === 0) headers.origin = pick(['https://a.example', 'null', '*']);
    if (int(10) === 0) headers['x-amz-content-sha256'] = pick(['UNSIGNED-PAYLOAD', 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD', 'zz', '0'.repeat(64)]);
    const b = body();
    const auth = pick(['good', 'good', 'good', 'forged', 'none']);
    return { method, path, headers, body: b.body, auth, truncated: b.truncated };
  };
}

async function signFor(port: number, c: Case): Promise<Record<string, string>> {
  if (c.auth === 'none') return {};
  const q = c.path.indexOf('?');
  const query: Record<string, string> = {};
  if (q !== -1) new URLSearchParams(c.path.slice(q + 1)).forEach((v, k) => { query[k] = v; });
  const signer = new SignatureV4({
    service: 'lambda', region: 'us-east-1', sha256: Sha256, applyChecksum: c.body.length % 2 === 0,
    credentials: { accessKeyId: CREDS.accessKeyId, secretAccessKey: c.auth === 'forged' ? 'forged-secret' : CREDS.secretAccessKey },
  });
  const signed = await signer.sign({
    method: c.method, protocol: 'http:', hostname: '127.0.0.1', port, path: q === -1 ? c.path : c.path.slice(0, q), query,
    headers: { host: `127.0.0.1:${port}`, ...c.headers }, body: c.body,
  });
  return signed.headers;
}

/** One request on its own connection; undefined when the server closed without answering. */
function send(port: number, c: Case, headers: Record<string, string>): Promise<RawResponse | undefined> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      const r = parseResponse(buf, closed, c.method === 'HEAD');
      if (r === undefined && !closed) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => {
      done = true;
      sock.destroy();
      reject(new Error(`no answer in 30 s to ${c.method} ${c.path.slice(0, 120)}`));
    }, 30_000);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      finish(false);
    });
    sock.on('close', () => finish(true));
    sock.on('error', () => finish(true));
    const length = c.truncated ? c.body.length + 100 : c.body.length;
    const lines = Object.entries({ ...headers, host: `127.0.0.1:${port}`, 'content-length': String(length) }).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    sock.write(Buffer.from(`${c.method} ${c.path} HTTP/1.1\r\n${lines}\r\n`, 'latin1'));
    sock.write(c.body);
    if (c.truncated) sock.end();
  });
}

describe('fuzzing the HTTP layer and the JSON schemas', () => {
  let s: RunningServer;
  let urlId: string;

  before(async () => {
    s = await startServer();
    const code = await zipFiles({ 'index.js': 'exports.handler = async (e) => ({ statusCode: 200, body: typeof e });' });
    await s.client.send(new CreateFunctionCommand({ FunctionName: 'fz', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: code } }));
    const u = await s.client.send(new CreateFunctionUrlConfigCommand({ FunctionName: 'fz', AuthType: 'NONE' }));
    urlId = /lambda-url\/([0-9a-f]{32})/.exec(u.FunctionUrl ?? '')?.[1] ?? '';
  });
  after(async () => {
    await s.stop();
  });

  test(`${REQUESTS} generated requests (seed ${SEED}): no 500, no crash, still answering`, async (t) => {
    const next = generator(SEED, urlId);
    const cases = Array.from({ length: REQUESTS }, next);
    const statuses = new Map<string, number>();
    const failures: string[] = [];
    let i = 0;
    const worker = async (): Promise<void> => {
      while (i < cases.length) {
        const n = i++;
        const c = cases[n] as Case;
        let signed: Record<string, string>;
        try {
          signed = await signFor(s.port, c);
        } catch {
          signed = {}; // the SDK signer refuses some of what the fuzzer generates: send it unsigned
        }
        const r = await send(s.port, c, signed);
        const key = r === undefined ? 'closed' : `${r.status}`;
        statuses.set(key, (statuses.get(key) ?? 0) + 1);
        const what = `#${n} ${c.auth} ${c.method} ${c.path.slice(0, 100)} body ${c.body.length} B${c.truncated ? ' (truncated)' : ''}`;
        if (r === undefined && !c.truncated) failures.push(`${what}: closed without an answer`);
        if (r !== undefined && (r.status === 500 || r.headers['x-amzn-errortype'] === 'ServiceException')) {
          failures.push(`${what}: ${r.status} ${r.body.toString().slice(0, 200)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
    t.diagnostic(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}`);
    assert.deepEqual(failures.slice(0, 20), [], `seed ${SEED}; statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
    assert.equal(s.proc.exitCode, null, 'the server is still running');
    await s.client.send(new ListFunctionsCommand({}));
    assert.doesNotMatch(s.output(), /unexpected error/);
    // Every class of answer showed up: the fuzzer reached past authentication into the handlers.
    for (const status of ['200', '400', '403', '404', '413']) assert.ok((statuses.get(status) ?? 0) > 0, `no ${status} among ${JSON.stringify(Object.fromEntries(statuses))}`);
  });
});
