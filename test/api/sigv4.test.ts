import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  GetFunctionCommand, InvokeCommand, LambdaClient, ListFunctionsCommand, ListVersionsByFunctionCommand,
} from '@aws-sdk/client-lambda';
import { buildQueryString, escapeUri } from '@smithy/core/protocols';
import { SignatureV4 } from '@smithy/signature-v4';
import { beginSigV4, verifySigV4, type Credentials, type SignedRequest, type VerifyResult } from '../../src/api/sigv4.js';

/**
 * Every positive case is signed by the SDK's own signer (@smithy/signature-v4, configured as
 * @aws-sdk/client-lambda configures it) and put on the "wire" with the SDK's own query-string builder, so
 * these check real signatures, not our reading of the spec.
 */

const AKID = 'AKIDEXAMPLE';
const SECRET = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
const CREDS: Credentials = { accessKeyId: AKID, secretAccessKey: SECRET };
const lookup = (id: string): Credentials | undefined => (id === AKID ? CREDS : undefined);
const SIGNED_AT = new Date('2026-11-26T10:30:00Z');
const NOW = SIGNED_AT.getTime() + 2_000;
const HOST = '127.0.0.1:9000';

/** SHA-256 for the signer from node:crypto (@aws-crypto/sha256-js is not installed). */
class NodeSha256 {
  private h: Hash | Hmac;
  constructor(private readonly secret?: string | ArrayBuffer | ArrayBufferView) {
    this.h = this.fresh();
  }
  private fresh(): Hash | Hmac {
    if (this.secret === undefined) return createHash('sha256');
    const key = typeof this.secret === 'string' ? this.secret
      : ArrayBuffer.isView(this.secret) ? Buffer.from(this.secret.buffer, this.secret.byteOffset, this.secret.byteLength)
        : Buffer.from(this.secret);
    return createHmac('sha256', key);
  }
  update(data: Uint8Array | string): void {
    this.h.update(data);
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.h.digest()));
  }
  reset(): void {
    this.h = this.fresh();
  }
}

const signer = (secret = SECRET, applyChecksum?: boolean): SignatureV4 =>
  new SignatureV4({ service: 'lambda', region: 'us-east-1', sha256: NodeSha256, credentials: { accessKeyId: AKID, secretAccessKey: secret }, applyChecksum });

type SdkRequest = Parameters<SignatureV4['presign']>[0];

interface Spec {
  method?: string;
  /** As the SDK holds it: labels already encoded (extendedEncodeURIComponent), exactly what goes on the wire. */
  path: string;
  query?: Record<string, string | string[]>;
  headers?: Record<string, string>;
  body?: string;
  secret?: string;
  applyChecksum?: boolean;
}

function sdkRequest(s: Spec): SdkRequest {
  const headers: Record<string, string> = { host: HOST, ...s.headers };
  if (s.body !== undefined) headers['content-length'] = String(Buffer.byteLength(s.body));
  return { method: s.method ?? 'GET', protocol: 'http:', hostname: '127.0.0.1', port: 9000, path: s.path, query: s.query ?? {}, headers, body: s.body };
}

/** What node:http would hand the server for this SDK request. */
function onTheWire(r: SdkRequest, body?: string): SignedRequest {
  const qs = buildQueryString(r.query ?? {});
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.headers)) headers[k.toLowerCase()] = v;
  return { method: r.method, rawUrl: r.path + (qs ? `?${qs}` : ''), headers, body: Buffer.from(body ?? '') };
}

async function signed(s: Spec): Promise<SignedRequest> {
  const r = await signer(s.secret, s.applyChecksum).sign(sdkRequest(s), { signingDate: SIGNED_AT });
  return onTheWire(r as SdkRequest, s.body);
}

const verify = (r: SignedRequest, now = NOW): VerifyResult => verifySigV4(r, lookup, { now });

function assertOk(res: VerifyResult): void {
  assert.deepEqual(res, { ok: true, accessKeyId: AKID, region: 'us-east-1', service: 'lambda' });
}
function assertFails(res: VerifyResult, code: string, message?: RegExp): void {
  assert.equal(res.ok, false, 'expected a failure');
  if (res.ok) return;
  assert.equal(res.code, code, res.message);
  if (message) assert.match(res.message, message);
}

const MISMATCH = /^The request signature we calculated does not match the signature you provided\. Check your AWS Secret Access Key and signing method\. Consult the service documentation for details\.$/;
/** How @aws-sdk/client-lambda puts a FunctionName label into the path. */
const label = (s: string): string => escapeUri(s);

// ----------------------------------------------------------------------------------------- accepted

void test('GET with query parameters (Marker, MaxItems, FunctionVersion)', async () => {
  const r = await signed({ path: '/2015-03-31/functions/', query: { Marker: 'abc/def==', MaxItems: '10', FunctionVersion: 'ALL' } });
  assert.match(r.rawUrl, /Marker=abc%2Fdef%3D%3D/);
  assertOk(verify(r));
});

void test('Qualifier=$LATEST in the query', async () => {
  const r = await signed({ path: '/2015-03-31/functions/my-fn/configuration', query: { Qualifier: '$LATEST' } });
  assert.equal(r.rawUrl, '/2015-03-31/functions/my-fn/configuration?Qualifier=%24LATEST');
  assertOk(verify(r));
});

void test('POST with a JSON body, x-amz-content-sha256 sent (as the SDK does)', async () => {
  const body = JSON.stringify({ hello: 'world', n: 1 });
  const r = await signed({
    method: 'POST', path: `/2015-03-31/functions/${label('my-fn:prod')}/invocations`, body,
    headers: { 'content-type': 'application/json', 'x-amz-invocation-type': 'RequestResponse', 'x-amz-log-type': 'Tail' },
  });
  assert.equal(r.headers['x-amz-content-sha256'], createHash('sha256').update(body).digest('hex'));
  assertOk(verify(r));
});

void test('POST without x-amz-content-sha256: the verifier hashes the body', async () => {
  const body = '{"a":[1,2,3]}';
  const r = await signed({ method: 'POST', path: '/2015-03-31/functions/my-fn/invocations', body, applyChecksum: false });
  assert.equal(r.headers['x-amz-content-sha256'], undefined);
  assertOk(verify(r));
  assertFails(verify({ ...r, body: Buffer.from('{"a":[1,2,4]}') }), 'InvalidSignature', MISMATCH);
});

void test('paths with ":" and "%24LATEST" are double-encoded', async () => {
  for (const name of ['my-fn:prod', 'my-fn:$LATEST', 'my-fn:1']) {
    const r = await signed({ path: `/2015-03-31/functions/${label(name)}/configuration` });
    assert.match(r.rawUrl, /%3A/);
    assertOk(verify(r));
  }
  const versions = await signed({ path: '/2015-03-31/functions/my-fn/versions/%24LATEST/x' });
  assertOk(verify(versions));
});

void test('a function ARN as the name', async () => {
  const arn = 'arn:aws:lambda:us-east-1:000000000000:function:my-fn:prod';
  const r = await signed({ method: 'POST', path: `/2015-03-31/functions/${label(arn)}/invocations`, body: '{}' });
  assert.equal(r.rawUrl, '/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Amy-fn%3Aprod/invocations');
  assertOk(verify(r));
});

void test('a client that puts ":" on the wire unencoded (and signed that path) is accepted', async () => {
  const r = await signed({ path: '/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:my-fn:prod/configuration' });
  assert.match(r.rawUrl, /my-fn:prod/);
  assertOk(verify(r));
});

void test('dot segments and empty segments are normalised as the SDK signer does', async () => {
  for (const path of ['/2015-03-31//functions/./x/../my-fn/', '/2015-03-31/functions/my-fn/..', '/']) {
    assertOk(verify(await signed({ path })));
  }
});

void test('query values with spaces, plus signs, reserved characters and repeated keys', async () => {
  const query = { Marker: 'a b+c/d?e&f=g', "odd key!'()*": 'é ~ x', tagKeys: ['zeta', 'alpha', 'Mid dle'] };
  const r = await signed({ path: '/2017-03-31/tags/x', query });
  assert.match(r.rawUrl, /Marker=a%20b%2Bc%2Fd%3Fe%26f%3Dg/);
  assertOk(verify(r));
  // Form-style encoding of the same values ("+" for space, lower-case hex, needlessly encoded letters) still verifies.
  const formStyle = r.rawUrl.replace('a%20b%2Bc', 'a+b%2bc').replace('alpha', '%61lpha');
  assert.notEqual(formStyle, r.rawUrl);
  assertOk(verify({ ...r, rawUrl: formStyle }));
  // But a "+" that was signed as a plus is not a space.
  assertFails(verify({ ...r, rawUrl: r.rawUrl.replace('a%20b%2Bc', 'a%20b+c') }), 'InvalidSignature', MISMATCH);
});

void test('signed header values are trimmed and inner whitespace collapsed', async () => {
  const r = await signed({ path: '/2015-03-31/functions/', headers: { 'x-amz-client-context': 'a   b\t c' } });
  assertOk(verify(r));
  assertOk(verify({ ...r, headers: { ...r.headers, 'x-amz-client-context': 'a b c' } }));
  assertFails(verify({ ...r, headers: { ...r.headers, 'x-amz-client-context': 'ab c' } }), 'InvalidSignature', MISMATCH);
});

void test('UNSIGNED-PAYLOAD is refused: a body could be swapped under a valid signature', async () => {
  const r = await signed({ method: 'POST', path: '/2015-03-31/functions/f/invocations', body: '{"x":1}', headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } });
  assert.equal(r.headers['x-amz-content-sha256'], 'UNSIGNED-PAYLOAD');
  assertFails(verify(r), 'InvalidSignature', /UNSIGNED-PAYLOAD is not accepted/);
  assertFails(verify({ ...r, body: Buffer.from('{"x":2}') }), 'InvalidSignature', /UNSIGNED-PAYLOAD is not accepted/);
  const streaming = await signed({ method: 'POST', path: '/2015-03-31/functions/f/invocations', body: '{}', headers: { 'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER' } });
  assertFails(verify(streaming), 'InvalidSignature', /UNSIGNED-PAYLOAD is not accepted/);
});

void test('beginSigV4 checks a declared payload hash before the body, and the body must match it', async () => {
  const body = '{"x":1}';
  const r = await signed({ method: 'POST', path: '/2015-03-31/functions/f/invocations', body });
  const begun = beginSigV4({ method: r.method, rawUrl: r.rawUrl, headers: r.headers }, lookup, { now: NOW });
  assert.ok(begun.ok);
  assert.equal(begun.declaredSha256, createHash('sha256').update(body).digest('hex'));
  assertOk(begun.finish(begun.declaredSha256 as string));
  const forged = await signed({ method: 'POST', path: '/2015-03-31/functions/f/invocations', body, secret: 'not-the-secret' });
  const b2 = beginSigV4({ method: forged.method, rawUrl: forged.rawUrl, headers: forged.headers }, lookup, { now: NOW });
  assert.ok(b2.ok);
  assertFails(b2.finish(b2.declaredSha256 as string), 'InvalidSignature', MISMATCH);
  assertFails(verify({ ...r, body: Buffer.from('{"x":2}') }), 'InvalidSignature', /x-amz-content-sha256' header does not match/);
});

void test('presigned URL (query auth), honouring X-Amz-Expires', async () => {
  const p = await signer().presign(sdkRequest({ path: `/2015-03-31/functions/${label('my-fn:prod')}/configuration`, query: { Qualifier: '$LATEST' }, headers: { 'x-amz-foo': 'bar baz' } }), {
    signingDate: SIGNED_AT, expiresIn: 300,
  });
  const r = onTheWire(p as SdkRequest);
  assert.match(r.rawUrl, /X-Amz-Signature=[0-9a-f]{64}/);
  assert.match(r.rawUrl, /X-Amz-Expires=300/);
  assert.equal(r.headers.authorization, undefined);
  assertOk(verify(r));
  assertOk(verify(r, SIGNED_AT.getTime() + 299_000));
  assertFails(verify(r, SIGNED_AT.getTime() + 301_000), 'InvalidSignature',
    /^Signature expired: 20261126T103000Z is now earlier than 20261126T103001Z \(20261126T103501Z - 300 sec\.\)$/);
  assertFails(verify({ ...r, rawUrl: r.rawUrl.replace('Qualifier=%24LATEST', 'Qualifier=prod') }), 'InvalidSignature', MISMATCH);
  assertFails(verify({ ...r, rawUrl: r.rawUrl.replace('X-Amz-Expires=300', 'X-Amz-Expires=3000') }), 'InvalidSignature', MISMATCH);
  const noSig = r.rawUrl.replace(/&?X-Amz-Signature=[0-9a-f]{64}/, '');
  assertFails(verify({ ...r, rawUrl: noSig }), 'IncompleteSignature', /must include 'X-Amz-Signature'/);
});

void test('the derived signing key is cached per secret: a rotated secret still verifies', async () => {
  const rotated = 'another-secret';
  const r = await signed({ path: '/2015-03-31/functions/', secret: rotated });
  assertFails(verify(r), 'InvalidSignature', MISMATCH);
  assertOk(verifySigV4(r, () => ({ accessKeyId: AKID, secretAccessKey: rotated }), { now: NOW }));
  assertOk(verify(await signed({ path: '/2015-03-31/functions/' })));
});

// ----------------------------------------------------------------------------------------- rejected

void test('tampered body (declared hash no longer matches)', async () => {
  const r = await signed({ method: 'POST', path: '/2015-03-31/functions/f/invocations', body: '{"amount":1}' });
  assertFails(verify({ ...r, body: Buffer.from('{"amount":9}') }), 'InvalidSignature', /x-amz-content-sha256/);
});

void test('tampered path', async () => {
  const r = await signed({ path: `/2015-03-31/functions/${label('my-fn:prod')}/configuration` });
  assertFails(verify({ ...r, rawUrl: r.rawUrl.replace('prod', 'dev') }), 'InvalidSignature', MISMATCH);
  // The same name sent decoded is a different path from the one that was signed.
  assertFails(verify({ ...r, rawUrl: r.rawUrl.replace('%3A', ':') }), 'InvalidSignature', MISMATCH);
});

void test('tampered query', async () => {
  const r = await signed({ path: '/2015-03-31/functions/', query: { MaxItems: '10' } });
  assertFails(verify({ ...r, rawUrl: r.rawUrl.replace('MaxItems=10', 'MaxItems=50') }), 'InvalidSignature', MISMATCH);
  assertFails(verify({ ...r, rawUrl: `${r.rawUrl}&Marker=x` }), 'InvalidSignature', MISMATCH);
  assertFails(verify({ ...r, rawUrl: r.rawUrl.split('?')[0] ?? '' }), 'InvalidSignature', MISMATCH);
});

void test('tampered method or signed header', async () => {
  const r = await signed({ method: 'POST', path: '/2015-03-31/functions/f/invocations', body: '{}', headers: { 'x-amz-invocation-type': 'Event' } });
  assertFails(verify({ ...r, method: 'PUT' }), 'InvalidSignature', MISMATCH);
  assertFails(verify({ ...r, headers: { ...r.headers, 'x-amz-invocation-type': 'RequestResponse' } }), 'InvalidSignature', MISMATCH);
  assertFails(verify({ ...r, headers: { ...r.headers, host: 'evil.example:9000' } }), 'InvalidSignature', MISMATCH);
});

void test('wrong secret', async () => {
  assertFails(verify(await signed({ path: '/2015-03-31/functions/', secret: 'not-the-secret' })), 'InvalidSignature', MISMATCH);
});

void test('unknown access key', async () => {
  const r = await signed({ path: '/2015-03-31/functions/' });
  assertFails(verifySigV4(r, () => undefined, { now: NOW }), 'UnrecognizedClient', /^The security token included in the request is invalid\.$/);
});

void test('missing authentication', () => {
  const r: SignedRequest = { method: 'GET', rawUrl: '/2015-03-31/functions/?MaxItems=1', headers: { host: HOST }, body: Buffer.alloc(0) };
  assertFails(verify(r), 'MissingAuthenticationToken', /^Missing Authentication Token$/);
});

void test('malformed Authorization headers', async () => {
  const r = await signed({ path: '/2015-03-31/functions/' });
  const withAuth = (authorization: string): VerifyResult => verify({ ...r, headers: { ...r.headers, authorization } });
  const good = r.headers.authorization as string;
  assertFails(withAuth('Bearer abc'), 'IncompleteSignature', /algorithm/);
  assertFails(withAuth('AWS4-HMAC-SHA256'), 'IncompleteSignature', /requires 'Credential' parameter/);
  assertFails(withAuth(`AWS4-HMAC-SHA256 Credential=${AKID}/20261126/us-east-1/lambda/aws4_request`), 'IncompleteSignature',
    /^Authorization header requires 'Signature' parameter\. Authorization header requires 'SignedHeaders' parameter\. Authorization=/);
  assertFails(withAuth(good.replace('Credential=', 'Credential ')), 'IncompleteSignature', /missing equal-sign/);
  assertFails(withAuth(good.replace('aws4_request', 'aws5_request')), 'IncompleteSignature', /terminator/);
  assertFails(withAuth(good.replace('/us-east-1/lambda', '/lambda')), 'IncompleteSignature', /Credential must have the form/);
  assertFails(withAuth(good.replace(/SignedHeaders=[^,]+/, 'SignedHeaders=x-amz-date')), 'IncompleteSignature', /'Host'/);
  assertFails(withAuth(good.replace(/SignedHeaders=([^,]+)/, (_m, h: string) => `SignedHeaders=${h.toUpperCase()}`)), 'IncompleteSignature', /SignedHeaders/);
  assertFails(withAuth(good.replace(/Signature=[0-9a-f]+/, 'Signature=abc')), 'InvalidSignature', MISMATCH);
  const noDate = { ...r.headers };
  delete noDate['x-amz-date'];
  assertFails(verify({ ...r, headers: noDate }), 'IncompleteSignature', /'X-Amz-Date' or a 'Date' header/);
  assertFails(verify({ ...r, headers: { ...r.headers, 'x-amz-date': '2026-11-26T10:30:00Z' } }), 'IncompleteSignature', /basic format/);
  assertFails(verify({ ...r, headers: { ...r.headers, 'x-amz-date': '20261127T103000Z' } }), 'InvalidSignature', /Date in Credential scope does not match/);
});

void test('expired and not-yet-current dates', async () => {
  const r = await signed({ path: '/2015-03-31/functions/' });
  assertOk(verify(r, SIGNED_AT.getTime() + 14 * 60_000));
  assertOk(verify(r, SIGNED_AT.getTime() - 14 * 60_000));
  assertFails(verify(r, SIGNED_AT.getTime() + 16 * 60_000), 'InvalidSignature',
    /^Signature expired: 20261126T103000Z is now earlier than 20261126T103100Z \(20261126T104600Z - 15 min\.\)$/);
  assertFails(verify(r, SIGNED_AT.getTime() - 16 * 60_000), 'InvalidSignature',
    /^Signature not yet current: 20261126T103000Z is still later than 20261126T102900Z \(20261126T101400Z \+ 15 min\.\)$/);
  assertFails(verifySigV4(r, lookup, { now: SIGNED_AT.getTime() + 90_000, maxSkewMs: 60_000 }), 'InvalidSignature', /Signature expired/);
});

// ----------------------------------------------------------------------------------------- end to end

void test('end to end: @aws-sdk/client-lambda against a real node:http server', async () => {
  const seen: { url: string; result: VerifyResult }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const result = verifySigV4({ method: req.method ?? 'GET', rawUrl: req.url ?? '/', headers: req.headers, body: Buffer.concat(chunks) }, lookup);
      seen.push({ url: req.url ?? '', result });
      if (result.ok) {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      } else {
        res.writeHead(403, { 'content-type': 'application/json', 'x-amzn-errortype': `${result.code}Exception` }).end(JSON.stringify({ message: result.message }));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = (secretAccessKey: string): LambdaClient =>
    new LambdaClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: AKID, secretAccessKey }, maxAttempts: 1 });
  const good = client(SECRET);
  const bad = client('wrong-secret');
  const ignoreParseErrors = (p: Promise<unknown>): Promise<unknown> => p.catch(() => undefined);
  try {
    await ignoreParseErrors(good.send(new ListFunctionsCommand({ MaxItems: 10, Marker: 'next page+1/2', FunctionVersion: 'ALL' })));
    await ignoreParseErrors(good.send(new GetFunctionCommand({ FunctionName: 'my-fn:prod' })));
    await ignoreParseErrors(good.send(new GetFunctionCommand({ FunctionName: 'arn:aws:lambda:us-east-1:000000000000:function:my-fn', Qualifier: '$LATEST' })));
    await ignoreParseErrors(good.send(new ListVersionsByFunctionCommand({ FunctionName: 'my-fn', Marker: "a b!'()*", MaxItems: 5 })));
    await ignoreParseErrors(good.send(new InvokeCommand({ FunctionName: 'my-fn:$LATEST', Payload: Buffer.from(JSON.stringify({ hi: 'there ✓' })), LogType: 'Tail' })));
    assert.equal(seen.length, 5);
    for (const s of seen) assert.deepEqual(s.result, { ok: true, accessKeyId: AKID, region: 'us-east-1', service: 'lambda' }, s.url);
    assert.match(seen[0]?.url ?? '', /MaxItems=10/);
    assert.match(seen[1]?.url ?? '', /my-fn%3Aprod/);
    assert.match(seen[4]?.url ?? '', /my-fn%3A%24LATEST/);

    await assert.rejects(bad.send(new ListFunctionsCommand({ MaxItems: 1 })), (e: unknown) => {
      assert.equal((e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode, 403);
      return true;
    });
    const last = seen[seen.length - 1]?.result;
    assert.equal(seen.length, 6);
    assert.deepEqual(last, { ok: false, code: 'InvalidSignature', message: MISMATCH.source.slice(1, -1).replace(/\\/g, '') });
  } finally {
    good.destroy();
    bad.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
