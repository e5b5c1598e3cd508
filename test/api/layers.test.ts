import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import yazl from 'yazl';
import {
  CreateFunctionCommand, DeleteLayerVersionCommand, GetFunctionConfigurationCommand, GetLayerVersionByArnCommand,
  GetLayerVersionCommand, InvokeCommand, ListLayerVersionsCommand, ListLayersCommand, PublishLayerVersionCommand,
  PublishVersionCommand, UpdateFunctionCodeCommand, UpdateFunctionConfigurationCommand,
} from '@aws-sdk/client-lambda';
import { ROLE, decode, startServer, zipFiles, type RunningServer } from '../helpers/server.js';

async function rejects(p: Promise<unknown>, name: string, status?: number, message?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    const err = e as { name?: string; $metadata?: { httpStatusCode?: number }; message?: string };
    assert.equal(err.name, name, `expected ${name}, got ${err.name}: ${err.message}`);
    if (status !== undefined) assert.equal(err.$metadata?.httpStatusCode, status);
    if (message !== undefined) assert.match(err.message ?? '', message);
    return true;
  });
}

/** A zip of `count` files of `bytes` zeros each, built in memory (each entry below the ratio check's threshold). */
function zerosZip(count: number, bytes: number): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  const zeros = Buffer.alloc(bytes);
  for (let i = 0; i < count; i++) zip.addBuffer(zeros, `data/f${i}.bin`, { mtime: new Date(0) });
  zip.end();
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    zip.outputStream.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve(Buffer.concat(chunks))).on('error', reject);
  });
}

const ARN = (name: string, v?: number): string => `arn:aws:lambda:us-east-1:000000000000:layer:${name}${v === undefined ? '' : `:${v}`}`;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('base64');

describe('Lambda layers through @aws-sdk/client-lambda', () => {
  let s: RunningServer;
  let libV1: Buffer;
  let libV2: Buffer;

  before(async () => {
    s = await startServer({ args: ['--driver', 'process'] });
    libV1 = await zipFiles({ 'nodejs/node_modules/greet/index.js': 'module.exports = (n) => `hello ${n} from v1`;' });
    libV2 = await zipFiles({ 'nodejs/node_modules/greet/index.js': 'module.exports = (n) => `hello ${n} from v2`;' });
  });
  after(async () => {
    await s.stop();
  });

  test('PublishLayerVersion, GetLayerVersion, GetLayerVersionByArn, content download', async () => {
    const p1 = await s.client.send(new PublishLayerVersionCommand({
      LayerName: 'greet', Content: { ZipFile: libV1 }, Description: 'greetings', LicenseInfo: 'MIT',
      CompatibleRuntimes: ['nodejs24.x', 'nodejs22.x'], CompatibleArchitectures: ['x86_64'],
    }));
    assert.equal(p1.$metadata.httpStatusCode, 201);
    assert.equal(p1.Version, 1);
    assert.equal(p1.LayerArn, ARN('greet'));
    assert.equal(p1.LayerVersionArn, ARN('greet', 1));
    assert.equal(p1.Description, 'greetings');
    assert.equal(p1.LicenseInfo, 'MIT');
    assert.deepEqual(p1.CompatibleRuntimes, ['nodejs24.x', 'nodejs22.x']);
    assert.deepEqual(p1.CompatibleArchitectures, ['x86_64']);
    assert.equal(p1.Content?.CodeSha256, sha(libV1));
    assert.equal(p1.Content?.CodeSize, libV1.length);
    assert.match(p1.CreatedDate ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$/);
    const dl = await fetch(p1.Content?.Location ?? '');
    assert.equal(dl.status, 200);
    assert.deepEqual(Buffer.from(await dl.arrayBuffer()), libV1);

    // The layer may be named by its ARN too.
    const p2 = await s.client.send(new PublishLayerVersionCommand({ LayerName: ARN('greet'), Content: { ZipFile: libV2 }, CompatibleRuntimes: ['nodejs24.x'] }));
    assert.equal(p2.Version, 2);
    assert.equal(p2.Description, '');
    assert.equal(p2.LicenseInfo, undefined);

    const g = await s.client.send(new GetLayerVersionCommand({ LayerName: 'greet', VersionNumber: 1 }));
    assert.equal(g.LayerVersionArn, ARN('greet', 1));
    assert.equal(g.Content?.CodeSha256, sha(libV1));
    const byArn = await s.client.send(new GetLayerVersionByArnCommand({ Arn: ARN('greet', 2) }));
    assert.equal(byArn.Version, 2);
    assert.equal(byArn.Content?.CodeSize, libV2.length);
    const dl2 = await fetch(byArn.Content?.Location ?? '');
    assert.deepEqual(Buffer.from(await dl2.arrayBuffer()), libV2);
  });

  test('layer errors: unknown versions, malformed names and ARNs, S3 content, bad archives, bad enums', async () => {
    await rejects(s.client.send(new GetLayerVersionCommand({ LayerName: 'greet', VersionNumber: 9 })), 'ResourceNotFoundException', 404);
    await rejects(s.client.send(new GetLayerVersionCommand({ LayerName: 'nope', VersionNumber: 1 })), 'ResourceNotFoundException', 404);
    await rejects(s.client.send(new GetLayerVersionByArnCommand({ Arn: ARN('greet', 9) })), 'ResourceNotFoundException', 404);
    await rejects(s.client.send(new GetLayerVersionByArnCommand({ Arn: 'arn:aws:lambda:us-east-1:000000000000:function:greet' })), 'ValidationException', 400);
    await rejects(s.client.send(new GetLayerVersionByArnCommand({ Arn: 'arn:aws:lambda:us-east-1:111111111111:layer:greet:1' })), 'AccessDeniedException', 403);
    await rejects(s.client.send(new PublishLayerVersionCommand({ LayerName: 'bad name!', Content: { ZipFile: libV1 } })), 'ValidationException', 400);
    await rejects(s.client.send(new PublishLayerVersionCommand({ LayerName: 'x'.repeat(141), Content: { ZipFile: libV1 } })), 'ValidationException', 400);
    await rejects(s.client.send(new PublishLayerVersionCommand({ LayerName: 's3', Content: { S3Bucket: 'b', S3Key: 'k.zip' } })), 'InvalidParameterValueException', 400, /ZipFile/);
    await rejects(s.client.send(new PublishLayerVersionCommand({ LayerName: 'empty', Content: {} })), 'InvalidParameterValueException', 400);
    await rejects(s.client.send(new PublishLayerVersionCommand({ LayerName: 'notzip', Content: { ZipFile: Buffer.from('this is not a zip archive') } })), 'InvalidZipFileException', 502);
    await rejects(s.client.send(new PublishLayerVersionCommand({ LayerName: 'rt', Content: { ZipFile: libV1 }, CompatibleRuntimes: ['cobol1.x' as never] })), 'ValidationException', 400, /compatibleRuntimes/);
    await rejects(s.client.send(new PublishLayerVersionCommand({ LayerName: 'arch', Content: { ZipFile: libV1 }, CompatibleArchitectures: ['mips' as never] })), 'ValidationException', 400);
    await rejects(s.client.send(new PublishLayerVersionCommand({ LayerName: 'desc', Content: { ZipFile: libV1 }, Description: 'd'.repeat(257) })), 'ValidationException', 400);
    // The same zip safety as function code: an entry that leaves the extraction directory.
    const evil = new yazl.ZipFile();
    evil.addBuffer(Buffer.from('x'), 'ok.txt');
    const evilBuf = await new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      evil.outputStream.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve(Buffer.concat(chunks)));
      evil.end();
    });
    const name = Buffer.from('ok.txt');
    const traversal = Buffer.from(evilBuf);
    for (let i = traversal.indexOf(name); i !== -1; i = traversal.indexOf(name, i + 1)) Buffer.from('../x.t').copy(traversal, i);
    await rejects(s.client.send(new PublishLayerVersionCommand({ LayerName: 'evil', Content: { ZipFile: traversal } })), 'InvalidZipFileException', 502, /Could not unzip uploaded file: .*\.\.\/x\.t/);
    await rejects(s.client.send(new ListLayersCommand({ CompatibleRuntime: 'cobol1.x' as never })), 'ValidationException', 400);
    // Nothing was published by the failures: their names are not layers.
    const names = (await s.client.send(new ListLayersCommand({}))).Layers?.map((l) => l.LayerName);
    assert.deepEqual(names, ['greet']);
  });

  test('ListLayers and ListLayerVersions: filters, newest first, pagination', async () => {
    await s.client.send(new PublishLayerVersionCommand({ LayerName: 'py-tools', Content: { ZipFile: await zipFiles({ 'python/tools.py': 'X = 1\n' }) }, CompatibleRuntimes: ['python3.11'], CompatibleArchitectures: ['arm64'] }));
    await s.client.send(new PublishLayerVersionCommand({ LayerName: 'any', Content: { ZipFile: await zipFiles({ 'bin/hello': 'echo hi' }) } }));
    const all = await s.client.send(new ListLayersCommand({}));
    assert.deepEqual(all.Layers?.map((l) => [l.LayerName, l.LayerArn, l.LatestMatchingVersion?.Version]), [
      ['any', ARN('any'), 1], ['greet', ARN('greet'), 2], ['py-tools', ARN('py-tools'), 1],
    ]);
    assert.equal(all.NextMarker, undefined);
    // greet:1 is the newest version compatible with nodejs22.x.
    const node22 = await s.client.send(new ListLayersCommand({ CompatibleRuntime: 'nodejs22.x' }));
    assert.deepEqual(node22.Layers?.map((l) => l.LatestMatchingVersion?.LayerVersionArn), [ARN('greet', 1)]);
    const arm = await s.client.send(new ListLayersCommand({ CompatibleArchitecture: 'arm64' }));
    assert.deepEqual(arm.Layers?.map((l) => l.LayerName), ['py-tools']);
    const seen: string[] = [];
    let marker: string | undefined;
    do {
      const page = await s.client.send(new ListLayersCommand({ MaxItems: 1, ...(marker === undefined ? {} : { Marker: marker }) }));
      assert.ok((page.Layers?.length ?? 0) <= 1);
      seen.push(...(page.Layers ?? []).map((l) => l.LayerName ?? ''));
      marker = page.NextMarker;
    } while (marker !== undefined);
    assert.deepEqual(seen, ['any', 'greet', 'py-tools']);

    const versions = await s.client.send(new ListLayerVersionsCommand({ LayerName: 'greet' }));
    assert.deepEqual(versions.LayerVersions?.map((v) => v.Version), [2, 1]);
    assert.equal(versions.LayerVersions?.[1]?.LicenseInfo, 'MIT');
    const filtered = await s.client.send(new ListLayerVersionsCommand({ LayerName: 'greet', CompatibleRuntime: 'nodejs22.x' }));
    assert.deepEqual(filtered.LayerVersions?.map((v) => v.LayerVersionArn), [ARN('greet', 1)]);
    const page1 = await s.client.send(new ListLayerVersionsCommand({ LayerName: 'greet', MaxItems: 1 }));
    assert.deepEqual(page1.LayerVersions?.map((v) => v.Version), [2]);
    assert.ok(page1.NextMarker !== undefined);
    const page2 = await s.client.send(new ListLayerVersionsCommand({ LayerName: 'greet', MaxItems: 1, Marker: page1.NextMarker }));
    assert.deepEqual(page2.LayerVersions?.map((v) => v.Version), [1]);
    assert.equal(page2.NextMarker, undefined);
    assert.deepEqual((await s.client.send(new ListLayerVersionsCommand({ LayerName: 'no-such-layer' }))).LayerVersions, []);
  });

  test('functions reference layers: validation, Layers in the configuration, a handler requiring a layer module', async () => {
    const code = await zipFiles({ 'index.js': "const greet = require('greet'); exports.handler = async (e) => ({ msg: greet(e.name) });" });
    const create = (name: string, layers: string[]): Promise<unknown> =>
      s.client.send(new CreateFunctionCommand({ FunctionName: name, Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: code }, Layers: layers }));
    await rejects(create('f-missing', [ARN('greet', 7)]), 'InvalidParameterValueException', 400, /Layer version arn:aws:lambda:us-east-1:000000000000:layer:greet:7 does not exist/);
    await rejects(create('f-region', ['arn:aws:lambda:eu-west-1:000000000000:layer:greet:1']), 'InvalidParameterValueException', 400, /does not exist/);
    await rejects(create('f-malformed', ['greet:1']), 'ValidationException', 400, /at 'layers'/);
    await rejects(create('f-same', [ARN('greet', 1), ARN('greet', 2)]), 'InvalidParameterValueException', 400, /same layer/);
    await rejects(create('f-six', [1, 2, 3, 4, 5, 6].map((i) => ARN(`l${i}`, 1))), 'InvalidParameterValueException', 400, /more than 5 layers/);

    const c = await s.client.send(new CreateFunctionCommand({
      FunctionName: 'greeter', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: code }, Layers: [ARN('any', 1), ARN('greet', 1)],
    }));
    const anySize = (await s.client.send(new GetLayerVersionCommand({ LayerName: 'any', VersionNumber: 1 }))).Content?.CodeSize;
    assert.deepEqual(c.Layers, [{ Arn: ARN('any', 1), CodeSize: anySize }, { Arn: ARN('greet', 1), CodeSize: libV1.length }]);
    const r = await s.client.send(new InvokeCommand({ FunctionName: 'greeter', Payload: Buffer.from('{"name":"ada"}') }));
    assert.equal(r.FunctionError, undefined, Buffer.from(r.Payload ?? []).toString());
    assert.deepEqual(decode(r.Payload), { msg: 'hello ada from v1' });

    const u = await s.client.send(new UpdateFunctionConfigurationCommand({ FunctionName: 'greeter', Layers: [ARN('greet', 2)] }));
    assert.deepEqual(u.Layers, [{ Arn: ARN('greet', 2), CodeSize: libV2.length }]);
    assert.deepEqual(decode((await s.client.send(new InvokeCommand({ FunctionName: 'greeter', Payload: Buffer.from('{"name":"bo"}') }))).Payload), { msg: 'hello bo from v2' });
    await rejects(s.client.send(new UpdateFunctionConfigurationCommand({ FunctionName: 'greeter', Layers: [ARN('greet', 3)] })), 'InvalidParameterValueException', 400, /does not exist/);
    const cfg = await s.client.send(new GetFunctionConfigurationCommand({ FunctionName: 'greeter' }));
    assert.deepEqual(cfg.Layers?.map((l) => l.Arn), [ARN('greet', 2)]);
  });

  test('DeleteLayerVersion: hidden from the API, numbers never reused, published function versions keep their layer', async () => {
    const v1 = await s.client.send(new PublishVersionCommand({ FunctionName: 'greeter' }));
    assert.deepEqual(v1.Layers?.map((l) => l.Arn), [ARN('greet', 2)]);
    const del = await s.client.send(new DeleteLayerVersionCommand({ LayerName: 'greet', VersionNumber: 2 }));
    assert.equal(del.$metadata.httpStatusCode, 204);
    // Deleting again (or a version that never existed) is not an error.
    await s.client.send(new DeleteLayerVersionCommand({ LayerName: 'greet', VersionNumber: 2 }));
    await s.client.send(new DeleteLayerVersionCommand({ LayerName: 'greet', VersionNumber: 42 }));
    await rejects(s.client.send(new GetLayerVersionCommand({ LayerName: 'greet', VersionNumber: 2 })), 'ResourceNotFoundException', 404);
    await rejects(s.client.send(new GetLayerVersionByArnCommand({ Arn: ARN('greet', 2) })), 'ResourceNotFoundException', 404);
    assert.deepEqual((await s.client.send(new ListLayerVersionsCommand({ LayerName: 'greet' }))).LayerVersions?.map((v) => v.Version), [1]);
    // greet:1 is now the newest.
    const listed = (await s.client.send(new ListLayersCommand({}))).Layers?.find((l) => l.LayerName === 'greet');
    assert.equal(listed?.LatestMatchingVersion?.Version, 1);
    // A deleted version cannot be added to a function...
    await rejects(s.client.send(new UpdateFunctionConfigurationCommand({ FunctionName: 'greeter', Layers: [ARN('greet', 2)] })), 'InvalidParameterValueException', 400, /does not exist/);
    // ...but the version pinned to it keeps running, and shows it.
    const r = await s.client.send(new InvokeCommand({ FunctionName: 'greeter', Qualifier: v1.Version, Payload: Buffer.from('{"name":"cy"}') }));
    assert.deepEqual(decode(r.Payload), { msg: 'hello cy from v2' });
    const cfg = await s.client.send(new GetFunctionConfigurationCommand({ FunctionName: 'greeter', Qualifier: v1.Version }));
    assert.deepEqual(cfg.Layers, [{ Arn: ARN('greet', 2), CodeSize: libV2.length }]);
    // The next version is 3, never 2 again.
    const p3 = await s.client.send(new PublishLayerVersionCommand({ LayerName: 'greet', Content: { ZipFile: libV1 } }));
    assert.equal(p3.Version, 3);
  });

  test('function code combined with layers must unzip to at most 250 MB', async () => {
    // 132 MB of zeros, in 1,000,000-byte files; published under two names it is stored once but counts twice.
    const big = await zerosZip(132, 1_000_000);
    await s.client.send(new PublishLayerVersionCommand({ LayerName: 'big-a', Content: { ZipFile: big } }));
    await s.client.send(new PublishLayerVersionCommand({ LayerName: 'big-b', Content: { ZipFile: big } }));
    const code = await zipFiles({ 'index.js': 'exports.handler = async () => 1;' });
    const ok = await s.client.send(new CreateFunctionCommand({ FunctionName: 'big', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: code }, Layers: [ARN('big-a', 1)] }));
    assert.equal(ok.Layers?.[0]?.CodeSize, big.length);
    await rejects(s.client.send(new UpdateFunctionConfigurationCommand({ FunctionName: 'big', Layers: [ARN('big-a', 1), ARN('big-b', 1)] })),
      'InvalidParameterValueException', 400, /Function code combined with layers exceeds the maximum allowed size of 262144000 bytes\. The actual size is 264000\d{3} bytes\./);
    await rejects(s.client.send(new CreateFunctionCommand({ FunctionName: 'big2', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: code }, Layers: [ARN('big-a', 1), ARN('big-b', 1)] })),
      'InvalidParameterValueException', 400, /combined with layers/);
    // New code is checked against the layers already attached.
    const bigCode = await zerosZip(131, 1_000_000);
    await rejects(s.client.send(new UpdateFunctionCodeCommand({ FunctionName: 'big', ZipFile: bigCode })), 'InvalidParameterValueException', 400, /combined with layers/);
  });
});
