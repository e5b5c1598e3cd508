import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import {
  CreateFunctionCommand, DeleteLayerVersionCommand, GetFunctionConfigurationCommand, InvokeCommand, PublishLayerVersionCommand,
  PublishVersionCommand, type InvokeCommandOutput,
} from '@aws-sdk/client-lambda';
import { ROLE, decode, signedHeaders, startServer, zipFiles, type RunningServer } from '../helpers/server.js';

/**
 * Layers at /opt in real environments, once per sandbox driver: merged in order (a later layer's files win), on
 * the runtimes' search paths, on the plain, stem cell and SnapStart start paths, read-only, and still there for
 * published versions after their layer version is deleted (and after a restart).
 */
const rootWithBwrap = process.getuid?.() === 0 && existsSync('/usr/bin/bwrap');

const LAYER_A = {
  'nodejs/node_modules/greet/index.js': "module.exports = () => 'greetings from A';",
  'nodejs/node24/node_modules/major/index.js': 'module.exports = 24;',
  'shared/who.txt': 'A',
  'shared/only-a.txt': 'a',
  'bin/layer-tool*': '#!/bin/sh\necho tool from A\n',
  'python/pyhelp.py': 'WHO = "A"\n',
};
const LAYER_B = {
  'nodejs/node_modules/greet/index.js': "module.exports = () => 'greetings from B';",
  'shared/who.txt': 'B',
  'shared/only-b.txt': 'b',
};

/** The handler finds /opt from where `greet` resolved, so it works where the process driver puts /opt too. */
const HANDLER = `
const fs = require('fs');
const path = require('path');
const greet = require('greet');
const atInit = greet();
exports.handler = async (e) => {
  const opt = path.resolve(require.resolve('greet'), '../../../..');
  const out = {
    atInit, greet: greet(), major: require('major'),
    who: fs.readFileSync(path.join(opt, 'shared/who.txt'), 'utf8'),
    shared: fs.readdirSync(path.join(opt, 'shared')).sort(),
    tool: require('child_process').execFileSync('layer-tool', { encoding: 'utf8' }).trim(),
    opt,
  };
  if (e.write) {
    try { fs.writeFileSync('/opt/new.txt', 'x'); out.write = 'written'; } catch (err) { out.write = err.code; }
    try { fs.unlinkSync('/opt/shared/who.txt'); out.unlink = 'unlinked'; } catch (err) { out.unlink = err.code; }
    // The mount on top at /opt, and its per-mount options.
    const opt = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\\n').filter((l) => l.split(' ')[4] === '/opt').pop();
    out.mountOptions = opt === undefined ? null : opt.split(' ')[5];
  }
  return out;
};`;

const ARN = (name: string, v: number): string => `arn:aws:lambda:us-east-1:000000000000:layer:${name}:${v}`;
const logOf = (r: InvokeCommandOutput): string => Buffer.from(r.LogResult ?? '', 'base64').toString();
const startPath = (r: InvokeCommandOutput): string | undefined => /Start Path: (\S+)/.exec(logOf(r))?.[1];

for (const driver of ['namespaces', 'process'] as const) {
  describe(`layers at /opt (${driver} driver)`, { skip: driver === 'namespaces' && !rootWithBwrap ? 'needs root and /usr/bin/bwrap' : false }, () => {
    let s: RunningServer;
    const invoke = (name: string, payload: unknown = {}, qualifier?: string): Promise<InvokeCommandOutput> =>
      s.client.send(new InvokeCommand({ FunctionName: name, Payload: Buffer.from(JSON.stringify(payload)), LogType: 'Tail', ...(qualifier === undefined ? {} : { Qualifier: qualifier }) }));
    const drain = async (name: string, qualifier?: string): Promise<void> => {
      const url = new URL(`/thaw/v1/functions/${name}/drain${qualifier === undefined ? '' : `?Qualifier=${qualifier}`}`, s.url);
      assert.equal((await fetch(url, { method: 'POST', headers: await signedHeaders(url, 'POST') })).status, 200);
    };
    const payload = (r: InvokeCommandOutput): Record<string, unknown> => {
      const p = decode(r.Payload) as Record<string, unknown>;
      assert.equal(r.FunctionError, undefined, JSON.stringify(p));
      return p;
    };
    const create = async (name: string, layers: string[], extra: Record<string, unknown> = {}): Promise<void> => {
      await s.client.send(new CreateFunctionCommand({
        FunctionName: name, Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: await zipFiles({ 'index.js': HANDLER }) }, Layers: layers, ...extra,
      }));
    };

    before(async () => {
      s = await startServer({ args: ['--driver', driver] });
      await s.client.send(new PublishLayerVersionCommand({ LayerName: 'a', Content: { ZipFile: await zipFiles(LAYER_A) } }));
      await s.client.send(new PublishLayerVersionCommand({ LayerName: 'b', Content: { ZipFile: await zipFiles(LAYER_B) } }));
    });
    after(async () => {
      await s.stop();
    });

    test('a handler requires modules only a layer provides; later layers overwrite earlier ones; /opt/bin is on PATH', async () => {
      await create('ab', [ARN('a', 1), ARN('b', 1)]);
      await create('ba', [ARN('b', 1), ARN('a', 1)]);
      const ab = payload(await invoke('ab'));
      assert.equal(ab.greet, 'greetings from B');
      assert.equal(ab.who, 'B');
      assert.deepEqual(ab.shared, ['only-a.txt', 'only-b.txt', 'who.txt']);
      assert.equal(ab.major, 24, '/opt/nodejs/node24/node_modules is on NODE_PATH');
      assert.equal(ab.tool, 'tool from A');
      if (driver === 'namespaces') assert.equal(ab.opt, '/opt');
      const ba = payload(await invoke('ba'));
      assert.equal(ba.greet, 'greetings from A');
      assert.equal(ba.who, 'A');
      assert.deepEqual(ba.shared, ['only-a.txt', 'only-b.txt', 'who.txt']);
      // A single layer is mounted as it is.
      await create('only-a', [ARN('a', 1)]);
      const a = payload(await invoke('only-a'));
      assert.equal(a.greet, 'greetings from A');
      assert.deepEqual(a.shared, ['only-a.txt', 'who.txt']);
    });

    test('Python: /opt/python is on sys.path', async () => {
      await s.client.send(new CreateFunctionCommand({
        FunctionName: 'py', Runtime: 'python3.11', Role: ROLE, Handler: 'app.handler', Layers: [ARN('a', 1)],
        Code: { ZipFile: await zipFiles({ 'app.py': 'import sys\nimport pyhelp\ndef handler(event, context):\n    return {"who": pyhelp.WHO, "first": sys.path[0]}\n' }) },
      }));
      const p = payload(await invoke('py'));
      assert.equal(p.who, 'A');
      if (driver === 'namespaces') assert.equal(p.first, '/var/task');
    });

    test('a published version keeps its deleted layer version, across a restart', async () => {
      const v = await s.client.send(new PublishVersionCommand({ FunctionName: 'ab' }));
      await s.client.send(new DeleteLayerVersionCommand({ LayerName: 'b', VersionNumber: 1 }));
      await drain('ab');
      assert.equal(payload(await invoke('ab', {}, v.Version)).greet, 'greetings from B');
      await s.stop();
      s = await startServer({ dataDir: s.dataDir, args: ['--driver', driver] });
      const cfg = await s.client.send(new GetFunctionConfigurationCommand({ FunctionName: 'ab', Qualifier: v.Version }));
      assert.deepEqual(cfg.Layers?.map((l) => l.Arn), [ARN('a', 1), ARN('b', 1)]);
      assert.equal(payload(await invoke('ab', {}, v.Version)).who, 'B');
      // Layer b's next version is 2, not 1 again.
      const b2 = await s.client.send(new PublishLayerVersionCommand({ LayerName: 'b', Content: { ZipFile: await zipFiles(LAYER_B) } }));
      assert.equal(b2.Version, 2);
    });

    test('SnapStart: the bundle and the build sandbox see /opt; the version restores with its layers', async () => {
      await create('snap', [ARN('a', 1), ARN('b', 2)], { SnapStart: { ApplyOn: 'PublishedVersions' }, MemorySize: 512 });
      const v = await s.client.send(new PublishVersionCommand({ FunctionName: 'snap' }));
      let state: string | undefined = v.State;
      let reason: string | undefined;
      for (let i = 0; i < 600 && state === 'Pending'; i++) {
        await new Promise((r) => setTimeout(r, 200));
        const c = await s.client.send(new GetFunctionConfigurationCommand({ FunctionName: 'snap', Qualifier: v.Version }));
        state = c.State;
        reason = c.StateReason;
      }
      assert.equal(state, 'Active', reason);
      await drain('snap', v.Version);
      const r = await invoke('snap', {}, v.Version);
      assert.match(logOf(r), /Restore Duration: [\d.]+ ms/);
      const p = payload(r);
      assert.equal(p.atInit, 'greetings from B', 'Init ran with the layer module in the snapshot');
      assert.equal(p.greet, 'greetings from B');
      assert.equal(p.who, 'B');
      assert.equal(p.tool, 'tool from A');
    });

    if (driver === 'namespaces') {
      test('/opt is read-only inside the sandbox', async () => {
        const p = payload(await invoke('ab', { write: true }));
        assert.match(String(p.mountOptions), /^ro,/);
        assert.ok(['EROFS', 'EACCES'].includes(String(p.write)), String(p.write));
        assert.ok(['EROFS', 'EACCES'].includes(String(p.unlink)), String(p.unlink));
        assert.equal(payload(await invoke('ab')).who, 'B');
      });

      test('stem cells: /opt is empty until specialised, then holds the function\'s layers', async () => {
        await create('stem-empty', [], { Code: { ZipFile: await zipFiles({ 'index.js': "exports.handler = async () => require('fs').readdirSync('/opt');" }) } });
        await create('stem-layers', [ARN('b', 2), ARN('a', 1)]);
        const cold = async (name: string, body: unknown = {}): Promise<InvokeCommandOutput> => {
          for (let i = 0; i < 40; i++) {
            await drain(name);
            const r = await invoke(name, body);
            if (startPath(r)?.startsWith('stem') === true) return r;
            await new Promise((res) => setTimeout(res, 250));
          }
          throw new Error(`no cold start of ${name} was served by a stem cell`);
        };
        assert.deepEqual(payload(await cold('stem-empty')), []);
        const p = payload(await cold('stem-layers', { write: true }));
        assert.equal(p.greet, 'greetings from A');
        assert.equal(p.who, 'A');
        assert.equal(p.major, 24);
        assert.match(String(p.mountOptions), /^ro,/, 'the layers are mounted read-only in the stem too');
        assert.ok(['EROFS', 'EACCES'].includes(String(p.write)), String(p.write));
        // The next function specialised from a stem sees none of these layers.
        assert.deepEqual(payload(await cold('stem-empty')), []);
      });
    }
  });
}
