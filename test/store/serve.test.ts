import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, lstatSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CreateFunctionCommand, GetFunctionCommand, GetFunctionConfigurationCommand, InvokeCommand, PublishVersionCommand } from '@aws-sdk/client-lambda';
import { ROLE, signedHeaders, startServer, zipFiles, type RunningServer } from '../helpers/server.js';
import { cliEnv, runThaw } from '../cli/run.js';

/** Built at run time so that this file's own text is not what the scan finds. */
const MARKER = ['thaw', 'plaintext', 'marker', createHash('sha256').update('m').digest('hex').slice(0, 12)].join('-');

const files = {
  'index.js': `const dep = require('dep');\n// ${MARKER}\nconst secret = '${MARKER}-handler';\nexports.handler = async () => ({ ok: dep.value, n: secret.length });\n`,
  'node_modules/dep/package.json': JSON.stringify({ name: 'dep', main: 'index.js' }),
  'node_modules/dep/index.js': `// ${MARKER}-dependency\nexports.value = 42;\n`,
};

/** Every file under dir whose bytes contain needle. */
function grep(dir: string, needle: Buffer): string[] {
  const hits: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) hits.push(...grep(p, needle));
    else if (st.isFile() && readFileSync(p).includes(needle)) hits.push(p);
  }
  return hits;
}

let s: RunningServer;
before(async () => {
  s = await startServer();
});
after(async () => {
  await s.stop();
});

async function waitActive(name: string, qualifier: string): Promise<string | undefined> {
  for (let i = 0; i < 600; i++) {
    const c = await s.client.send(new GetFunctionConfigurationCommand({ FunctionName: name, Qualifier: qualifier }));
    if (c.State !== 'Pending') return c.State;
    await new Promise((r) => setTimeout(r, 100));
  }
  return undefined;
}

test('no plaintext of function code anywhere under the data directory after deploy, invokes, code cache and snapshot', async () => {
  const zip = await zipFiles(files);
  await s.client.send(new CreateFunctionCommand({
    FunctionName: 'marked', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler',
    SnapStart: { ApplyOn: 'PublishedVersions' }, Code: { ZipFile: zip },
  }));
  for (let i = 0; i < 3; i++) {
    const r = await s.client.send(new InvokeCommand({ FunctionName: 'marked' }));
    assert.equal(r.FunctionError, undefined);
    assert.deepEqual(JSON.parse(Buffer.from(r.Payload ?? []).toString()), { ok: 42, n: MARKER.length + 8 });
    await runThaw(['drain', 'marked'], cliEnv(s.url));
  }
  const v = await s.client.send(new PublishVersionCommand({ FunctionName: 'marked' }));
  const state = await waitActive('marked', v.Version ?? '1');
  const r = await s.client.send(new InvokeCommand({ FunctionName: 'marked', Qualifier: v.Version }));
  assert.equal(r.FunctionError, undefined);

  // GetFunction's download gives back the same zip.
  const g = await s.client.send(new GetFunctionCommand({ FunctionName: 'marked' }));
  const dl = await fetch(g.Code?.Location ?? '');
  assert.equal(dl.status, 200);
  assert.deepEqual(Buffer.from(await dl.arrayBuffer()), zip);

  const stats = await runThaw(['store', 'stats', '--json'], cliEnv(s.url));
  assert.equal(stats.code, 0, stats.stderr);
  const j = JSON.parse(stats.stdout) as { Artifacts: number; LogicalBytes: number; StoredBytes: number; DedupRatio: number; Tiers: { Tier: string; HitRate: number }[] };
  assert.equal(state, 'Active');
  // The code package, its code cache and the version's snapshot.
  assert.equal(j.Artifacts, 3);
  assert.ok(j.LogicalBytes > 0 && j.StoredBytes > 0);
  assert.deepEqual(j.Tiers.map((t) => t.Tier), ['memory', 'origin']);
  const human = await runThaw(['store', 'stats'], cliEnv(s.url));
  assert.match(human.stdout, /dedup ratio/);
  const url = new URL(`${s.url}/thaw/v1/store/stats`);
  assert.equal((await fetch(url)).status, 403, 'SigV4 like the other endpoints');
  assert.equal((await fetch(url, { headers: await signedHeaders(url) })).status, 200);

  const hits = grep(s.dataDir, Buffer.from(MARKER));
  assert.deepEqual(hits, [], `plaintext of function code under the data directory (snapshot state ${state})`);
});

test('a tampered origin chunk never reaches a function: the invoke fails clearly', async () => {
  await s.stop();
  // Every chunk of the origin damaged, then a fresh server (empty memory tier, nothing materialised).
  const origin = join(s.dataDir, 'store');
  for (const d of readdirSync(origin)) {
    for (const f of readdirSync(join(origin, d))) {
      const p = join(origin, d, f);
      const b = readFileSync(p);
      b[b.length - 1] = (b[b.length - 1] as number) ^ 0x55;
      writeFileSync(p, b);
    }
  }
  s = await startServer({ dataDir: s.dataDir });
  const r = s.client.send(new InvokeCommand({ FunctionName: 'marked' }));
  await assert.rejects(r, (e: unknown) => {
    const err = e as { name: string; message: string };
    assert.equal(err.name, 'ServiceException');
    assert.match(err.message, /failed verification in the chunk store \(ChunkCorrupt\); it was not run/);
    return true;
  });
});
