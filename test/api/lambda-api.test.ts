import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CreateAliasCommand, CreateFunctionCommand, CreateFunctionUrlConfigCommand, DeleteAliasCommand, DeleteFunctionCommand,
  DeleteFunctionUrlConfigCommand, GetAccountSettingsCommand, GetAliasCommand, GetFunctionCommand,
  GetFunctionConfigurationCommand, GetFunctionUrlConfigCommand, InvokeCommand, LambdaClient, ListAliasesCommand,
  ListFunctionUrlConfigsCommand, ListFunctionsCommand, ListTagsCommand, ListVersionsByFunctionCommand,
  PublishVersionCommand, TagResourceCommand, UntagResourceCommand, UpdateAliasCommand, UpdateFunctionCodeCommand,
  UpdateFunctionConfigurationCommand, UpdateFunctionUrlConfigCommand,
} from '@aws-sdk/client-lambda';
import { CREDS, ROLE, decode, signedHeaders, startServer, zipFiles, type RunningServer } from '../helpers/server.js';

const HANDLER = `
exports.handler = async (event, context) => {
  console.log('hello from', context.functionName, JSON.stringify(event));
  if (event && event.fail) throw new Error('asked to fail');
  return { tag: 'v1', event, fn: context.functionName, version: context.functionVersion,
    greeting: process.env.GREETING ?? null, clientContext: context.clientContext ?? null };
};`;
const handlerV = (tag: string): string => HANDLER.replace("tag: 'v1'", `tag: '${tag}'`);

async function rejects(p: Promise<unknown>, name: string, status?: number): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    const err = e as { name?: string; $metadata?: { httpStatusCode?: number }; message?: string };
    assert.equal(err.name, name, `expected ${name}, got ${err.name}: ${err.message}`);
    if (status !== undefined) assert.equal(err.$metadata?.httpStatusCode, status);
    return true;
  });
}

describe('Lambda REST API through @aws-sdk/client-lambda', () => {
  let s: RunningServer;
  let zip1: Buffer;

  before(async () => {
    s = await startServer();
    zip1 = await zipFiles({ 'index.js': HANDLER });
  });
  after(async () => {
    await s.stop();
  });

  test('CreateFunction, GetFunction, GetFunctionConfiguration, code download', async () => {
    const c = await s.client.send(new CreateFunctionCommand({
      FunctionName: 'hello', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: zip1 },
      Description: 'first', MemorySize: 256, Timeout: 5, Environment: { Variables: { GREETING: 'hi' } },
      Tags: { team: 'core' }, EphemeralStorage: { Size: 1024 }, SnapStart: { ApplyOn: 'None' },
    }));
    assert.equal(c.FunctionName, 'hello');
    assert.equal(c.State, 'Active');
    assert.equal(c.Version, '$LATEST');
    assert.equal(c.MemorySize, 256);
    assert.equal(c.EphemeralStorage?.Size, 1024);
    assert.equal(c.CodeSha256, createHash('sha256').update(zip1).digest('base64'));
    assert.equal(c.FunctionArn, 'arn:aws:lambda:us-east-1:000000000000:function:hello');

    const g = await s.client.send(new GetFunctionCommand({ FunctionName: 'hello' }));
    assert.equal(g.Configuration?.Description, 'first');
    assert.deepEqual(g.Tags, { team: 'core' });
    const dl = await fetch(g.Code?.Location ?? '');
    assert.equal(dl.status, 200);
    assert.deepEqual(Buffer.from(await dl.arrayBuffer()), zip1);
    // One hex digit of the signature changed (to a different one, whatever it was).
    const tampered = await fetch((g.Code?.Location ?? '').replace(/signature=(.)/, (_m, c: string) => `signature=${c === '0' ? '1' : '0'}`));
    assert.equal(tampered.status, 403);

    const cfg = await s.client.send(new GetFunctionConfigurationCommand({ FunctionName: 'arn:aws:lambda:us-east-1:000000000000:function:hello' }));
    assert.equal(cfg.Environment?.Variables?.GREETING, 'hi');
    await rejects(s.client.send(new CreateFunctionCommand({ FunctionName: 'hello', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: zip1 } })), 'ResourceConflictException', 409);
  });

  test('Invoke: RequestResponse, Tail, client context, function error, Event, DryRun', async () => {
    const r = await s.client.send(new InvokeCommand({ FunctionName: 'hello', Payload: Buffer.from('{"n":1}'), LogType: 'Tail', ClientContext: Buffer.from(JSON.stringify({ custom: { a: 1 } })).toString('base64') }));
    assert.equal(r.StatusCode, 200);
    assert.equal(r.ExecutedVersion, '$LATEST');
    assert.equal(r.FunctionError, undefined);
    const body = decode(r.Payload) as Record<string, unknown>;
    assert.deepEqual(body.event, { n: 1 });
    assert.equal(body.fn, 'hello');
    assert.equal(body.greeting, 'hi');
    assert.deepEqual((body.clientContext as { custom?: unknown }).custom, { a: 1 });
    const log = Buffer.from(r.LogResult ?? '', 'base64').toString();
    assert.match(log, /START RequestId: [0-9a-f-]{36} Version: \$LATEST/);
    assert.match(log, /hello from hello \{"n":1\}/);
    assert.match(log, /END RequestId: /);
    assert.match(log, /REPORT RequestId: .*Duration: [\d.]+ ms\tBilled Duration: \d+ ms\tMemory Size: 256 MB\tMax Memory Used: \d+ MB/);

    const f = await s.client.send(new InvokeCommand({ FunctionName: 'hello', Payload: Buffer.from('{"fail":true}') }));
    assert.equal(f.FunctionError, 'Unhandled');
    const err = decode(f.Payload) as { errorType: string; errorMessage: string };
    assert.equal(err.errorType, 'Error');
    assert.equal(err.errorMessage, 'asked to fail');

    const ev = await s.client.send(new InvokeCommand({ FunctionName: 'hello', InvocationType: 'Event', Payload: Buffer.from('{"async":true}') }));
    assert.equal(ev.StatusCode, 202);
    const dry = await s.client.send(new InvokeCommand({ FunctionName: 'hello', InvocationType: 'DryRun' }));
    assert.equal(dry.StatusCode, 204);
    await rejects(s.client.send(new InvokeCommand({ FunctionName: 'nope' })), 'ResourceNotFoundException', 404);
    await rejects(s.client.send(new InvokeCommand({ FunctionName: 'hello', Payload: Buffer.from('not json') })), 'InvalidRequestContentException', 400);
  });

  test('oversized payloads: 413 RequestTooLargeException', async () => {
    const big = Buffer.from(JSON.stringify({ pad: 'x'.repeat(6 * 1024 * 1024) }));
    await rejects(s.client.send(new InvokeCommand({ FunctionName: 'hello', Payload: big })), 'RequestTooLargeException', 413);
    const event = Buffer.from(JSON.stringify({ pad: 'x'.repeat(300 * 1024) }));
    await rejects(s.client.send(new InvokeCommand({ FunctionName: 'hello', InvocationType: 'Event', Payload: event })), 'RequestTooLargeException', 413);
    // The server is fine afterwards.
    const r = await s.client.send(new InvokeCommand({ FunctionName: 'hello', Payload: Buffer.from('{}') }));
    assert.equal(r.StatusCode, 200);
  });

  test('validation: ValidationException and InvalidParameterValueException', async () => {
    await rejects(s.client.send(new CreateFunctionCommand({ FunctionName: 'bad-mem', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: zip1 }, MemorySize: 64 })), 'ValidationException', 400);
    await rejects(s.client.send(new CreateFunctionCommand({ FunctionName: 'bad-timeout', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: zip1 }, Timeout: 901 })), 'ValidationException', 400);
    await rejects(s.client.send(new CreateFunctionCommand({ FunctionName: 'bad-env', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: zip1 }, Environment: { Variables: { AWS_REGION: 'x' } } })), 'InvalidParameterValueException', 400);
    await rejects(s.client.send(new CreateFunctionCommand({ FunctionName: 'bad-runtime', Runtime: 'cobol1.x' as never, Role: ROLE, Handler: 'index.handler', Code: { ZipFile: zip1 } })), 'InvalidParameterValueException', 400);
    await rejects(s.client.send(new GetFunctionCommand({ FunctionName: 'no-such-function' })), 'ResourceNotFoundException', 404);
  });

  test('hostile and malformed zips: InvalidZipFileException, nothing created', async () => {
    await rejects(s.client.send(new CreateFunctionCommand({ FunctionName: 'garbage', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: Buffer.from('this is not a zip at all') } })), 'InvalidZipFileException');
    const good = await zipFiles({ 'index.js': HANDLER });
    const truncated = good.subarray(0, good.length - 30);
    await rejects(s.client.send(new CreateFunctionCommand({ FunctionName: 'truncated', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: truncated } })), 'InvalidZipFileException');
    // A zip whose entry escapes the root: same length name patched in both headers.
    const slip = await zipFiles({ 'aa/index.js': HANDLER });
    const patched = Buffer.from(slip.toString('latin1').split('aa/index.js').join('../index.js'), 'latin1');
    await rejects(s.client.send(new CreateFunctionCommand({ FunctionName: 'slip', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: patched } })), 'InvalidZipFileException');
    await rejects(s.client.send(new GetFunctionCommand({ FunctionName: 'slip' })), 'ResourceNotFoundException');
  });

  test('UpdateFunctionCode with RevisionId, UpdateFunctionConfiguration', async () => {
    const cur = await s.client.send(new GetFunctionConfigurationCommand({ FunctionName: 'hello' }));
    await rejects(s.client.send(new UpdateFunctionCodeCommand({ FunctionName: 'hello', ZipFile: await zipFiles({ 'index.js': handlerV('v2') }), RevisionId: 'wrong' })), 'PreconditionFailedException', 412);
    const u = await s.client.send(new UpdateFunctionCodeCommand({ FunctionName: 'hello', ZipFile: await zipFiles({ 'index.js': handlerV('v2') }), RevisionId: cur.RevisionId }));
    assert.notEqual(u.RevisionId, cur.RevisionId);
    const r = decode((await s.client.send(new InvokeCommand({ FunctionName: 'hello' }))).Payload) as { tag: string };
    assert.equal(r.tag, 'v2');
    const c = await s.client.send(new UpdateFunctionConfigurationCommand({ FunctionName: 'hello', Environment: { Variables: { GREETING: 'hey' } }, Description: 'second' }));
    assert.equal(c.Description, 'second');
    const r2 = decode((await s.client.send(new InvokeCommand({ FunctionName: 'hello' }))).Payload) as { greeting: string };
    assert.equal(r2.greeting, 'hey');
  });

  test('versions and aliases, with routing weights applied at invoke', async () => {
    const v1 = await s.client.send(new PublishVersionCommand({ FunctionName: 'hello', Description: 'one' }));
    assert.equal(v1.Version, '1');
    const again = await s.client.send(new PublishVersionCommand({ FunctionName: 'hello' }));
    assert.equal(again.Version, '1', 'publishing an unchanged $LATEST returns the existing version');
    await rejects(s.client.send(new PublishVersionCommand({ FunctionName: 'hello', CodeSha256: Buffer.alloc(32).toString('base64') })), 'InvalidParameterValueException', 400);
    await s.client.send(new UpdateFunctionCodeCommand({ FunctionName: 'hello', ZipFile: await zipFiles({ 'index.js': handlerV('v3') }) }));
    const v2 = await s.client.send(new PublishVersionCommand({ FunctionName: 'hello' }));
    assert.equal(v2.Version, '2');
    const list = await s.client.send(new ListVersionsByFunctionCommand({ FunctionName: 'hello' }));
    assert.deepEqual(list.Versions?.map((v) => v.Version), ['$LATEST', '1', '2']);

    const byVersion = await s.client.send(new InvokeCommand({ FunctionName: 'hello', Qualifier: '1' }));
    assert.equal(byVersion.ExecutedVersion, '1');
    assert.equal((decode(byVersion.Payload) as { tag: string; version: string }).tag, 'v2');
    assert.equal((decode(byVersion.Payload) as { version: string }).version, '1');

    const a = await s.client.send(new CreateAliasCommand({ FunctionName: 'hello', Name: 'live', FunctionVersion: '1', Description: 'prod' }));
    assert.equal(a.AliasArn, 'arn:aws:lambda:us-east-1:000000000000:function:hello:live');
    await rejects(s.client.send(new CreateAliasCommand({ FunctionName: 'hello', Name: 'live', FunctionVersion: '1' })), 'ResourceConflictException', 409);
    const viaAlias = await s.client.send(new InvokeCommand({ FunctionName: 'hello:live' }));
    assert.equal(viaAlias.ExecutedVersion, '1');

    await s.client.send(new UpdateAliasCommand({ FunctionName: 'hello', Name: 'live', RoutingConfig: { AdditionalVersionWeights: { '2': 0.5 } } }));
    const got = await s.client.send(new GetAliasCommand({ FunctionName: 'hello', Name: 'live' }));
    assert.deepEqual(got.RoutingConfig?.AdditionalVersionWeights, { '2': 0.5 });
    const seen = new Set<string>();
    for (let i = 0; i < 40 && seen.size < 2; i++) {
      const r = await s.client.send(new InvokeCommand({ FunctionName: 'hello', Qualifier: 'live' }));
      seen.add(r.ExecutedVersion ?? '');
    }
    assert.deepEqual([...seen].sort(), ['1', '2']);
    await s.client.send(new UpdateAliasCommand({ FunctionName: 'hello', Name: 'live', FunctionVersion: '2', RoutingConfig: { AdditionalVersionWeights: {} } }));
    for (let i = 0; i < 5; i++) {
      assert.equal((await s.client.send(new InvokeCommand({ FunctionName: 'hello', Qualifier: 'live' }))).ExecutedVersion, '2');
    }
    await rejects(s.client.send(new DeleteFunctionCommand({ FunctionName: 'hello', Qualifier: '2' })), 'ResourceConflictException', 409);
    await s.client.send(new CreateAliasCommand({ FunctionName: 'hello', Name: 'temp', FunctionVersion: '$LATEST' }));
    const aliases = await s.client.send(new ListAliasesCommand({ FunctionName: 'hello' }));
    assert.deepEqual(aliases.Aliases?.map((x) => x.Name), ['live', 'temp']);
    await s.client.send(new DeleteAliasCommand({ FunctionName: 'hello', Name: 'temp' }));
    await rejects(s.client.send(new GetAliasCommand({ FunctionName: 'hello', Name: 'temp' })), 'ResourceNotFoundException', 404);
  });

  test('ListFunctions pages with Marker/MaxItems', async () => {
    for (const n of ['page-a', 'page-b', 'page-c']) {
      await s.client.send(new CreateFunctionCommand({ FunctionName: n, Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: zip1 } }));
    }
    const names: string[] = [];
    let marker: string | undefined;
    let pages = 0;
    do {
      const p = await s.client.send(new ListFunctionsCommand({ MaxItems: 2, Marker: marker }));
      names.push(...(p.Functions ?? []).map((f) => f.FunctionName ?? ''));
      marker = p.NextMarker;
      pages++;
    } while (marker !== undefined && pages < 10);
    assert.ok(pages >= 2);
    for (const n of ['hello', 'page-a', 'page-b', 'page-c']) assert.ok(names.includes(n), n);
    assert.equal(new Set(names).size, names.length, 'no duplicates across pages');
  });

  test('tags and account settings', async () => {
    const arn = 'arn:aws:lambda:us-east-1:000000000000:function:hello';
    await s.client.send(new TagResourceCommand({ Resource: arn, Tags: { env: 'test', owner: 'me' } }));
    await s.client.send(new UntagResourceCommand({ Resource: arn, TagKeys: ['owner'] }));
    const t = await s.client.send(new ListTagsCommand({ Resource: arn }));
    assert.deepEqual(t.Tags, { team: 'core', env: 'test' });
    const acct = await s.client.send(new GetAccountSettingsCommand({}));
    assert.ok((acct.AccountUsage?.FunctionCount ?? 0) >= 1);
    assert.equal(acct.AccountLimit?.CodeSizeUnzipped, 262144000);
  });

  test('function URLs: NONE is public, AWS_IAM needs a signature, payload 2.0 both ways', async () => {
    const code = await zipFiles({
      'index.js': `exports.handler = async (event) => ({ statusCode: 201, headers: { 'x-echo': event.rawPath }, cookies: ['a=1'],
        body: JSON.stringify({ method: event.requestContext.http.method, q: event.queryStringParameters, body: event.body, version: event.version }) });`,
    });
    await s.client.send(new CreateFunctionCommand({ FunctionName: 'web', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: code } }));
    const u = await s.client.send(new CreateFunctionUrlConfigCommand({ FunctionName: 'web', AuthType: 'NONE' }));
    assert.match(u.FunctionUrl ?? '', /^http:\/\/127\.0\.0\.1:\d+\/lambda-url\/[0-9a-f]{32}\/$/);
    const res = await fetch(`${u.FunctionUrl}some/path?x=1&x=2`, { method: 'POST', body: 'hello body', headers: { 'content-type': 'text/plain' } });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('x-echo'), '/some/path');
    assert.equal(res.headers.get('set-cookie'), 'a=1');
    assert.deepEqual(await res.json(), { method: 'POST', q: { x: '1,2' }, body: 'hello body', version: '2.0' });

    await s.client.send(new UpdateFunctionUrlConfigCommand({ FunctionName: 'web', AuthType: 'AWS_IAM' }));
    const got = await s.client.send(new GetFunctionUrlConfigCommand({ FunctionName: 'web' }));
    assert.equal(got.AuthType, 'AWS_IAM');
    assert.equal((await fetch(`${u.FunctionUrl}`)).status, 403);
    const target = new URL(`${u.FunctionUrl}signed`);
    const ok = await fetch(target, { headers: await signedHeaders(target) });
    assert.equal(ok.status, 201);
    const list = await s.client.send(new ListFunctionUrlConfigsCommand({ FunctionName: 'web' }));
    assert.equal(list.FunctionUrlConfigs?.length, 1);
    await s.client.send(new DeleteFunctionUrlConfigCommand({ FunctionName: 'web' }));
    assert.equal((await fetch(`${u.FunctionUrl}`)).status, 404);
  });

  test('SigV4: a wrong secret and an unknown key get 403', async () => {
    const wrong = new LambdaClient({ endpoint: s.url, region: 'us-east-1', credentials: { accessKeyId: CREDS.accessKeyId, secretAccessKey: 'wrong-secret' }, maxAttempts: 1 });
    await rejects(wrong.send(new ListFunctionsCommand({})), 'InvalidSignatureException', 403);
    const unknown = new LambdaClient({ endpoint: s.url, region: 'us-east-1', credentials: { accessKeyId: 'AKIANOBODY', secretAccessKey: 'x' }, maxAttempts: 1 });
    await rejects(unknown.send(new InvokeCommand({ FunctionName: 'hello' })), 'UnrecognizedClientException', 403);
    const raw = await fetch(`${s.url}/2015-03-31/functions/`);
    assert.equal(raw.status, 403);
    assert.equal(raw.headers.get('x-amzn-errortype'), 'MissingAuthenticationTokenException');
    wrong.destroy();
    unknown.destroy();
  });

  test('a storage fault is a ServiceException without internals, and loses nothing', async () => {
    const code = await zipFiles({ 'index.js': handlerV('fault') });
    // The chunk origin replaced by a file makes every chunk write fail.
    const origin = join(s.dataDir, 'store');
    renameSync(origin, `${origin}.moved`);
    writeFileSync(origin, 'not a directory');
    await assert.rejects(s.client.send(new CreateFunctionCommand({ FunctionName: 'faulty', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: code } })), (e: unknown) => {
      const err = e as { name: string; $metadata: { httpStatusCode: number }; message: string };
      assert.equal(err.name, 'ServiceException');
      assert.equal(err.$metadata.httpStatusCode, 500);
      assert.doesNotMatch(err.message, /at |EISDIR|\/code\//);
      return true;
    });
    rmSync(origin);
    renameSync(`${origin}.moved`, origin);
    await rejects(s.client.send(new GetFunctionCommand({ FunctionName: 'faulty' })), 'ResourceNotFoundException');
    const r = await s.client.send(new InvokeCommand({ FunctionName: 'hello' }));
    assert.equal(r.StatusCode, 200);
  });

  test('restart keeps functions, versions and aliases', async () => {
    await s.stop();
    s = await startServer({ dataDir: s.dataDir });
    const fns = await s.client.send(new ListFunctionsCommand({}));
    assert.ok(fns.Functions?.some((f) => f.FunctionName === 'hello'));
    const versions = await s.client.send(new ListVersionsByFunctionCommand({ FunctionName: 'hello' }));
    assert.deepEqual(versions.Versions?.map((v) => v.Version), ['$LATEST', '1', '2']);
    const alias = await s.client.send(new GetAliasCommand({ FunctionName: 'hello', Name: 'live' }));
    assert.equal(alias.FunctionVersion, '2');
    const r = await s.client.send(new InvokeCommand({ FunctionName: 'hello', Qualifier: 'live' }));
    assert.equal(r.ExecutedVersion, '2');
    assert.equal((decode(r.Payload) as { tag: string }).tag, 'v3');
    await s.client.send(new DeleteFunctionCommand({ FunctionName: 'hello' }));
    await rejects(s.client.send(new GetFunctionCommand({ FunctionName: 'hello' })), 'ResourceNotFoundException');
  });
});
