import assert from 'node:assert/strict';
import { readFile, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, test } from 'node:test';
import { afterPrologue, bundleHandler, parseHandler, rewriteLocation, type BundleOptions } from '../../src/snapshot/bundle.js';
import { SnapshotBuildError } from '../../src/snapshot/errors.js';
import { tempDir, writeFiles } from './helpers.js';

const requireHere = createRequire(import.meta.url);

async function bundle(files: Record<string, string>, handler: string, opts: Partial<BundleOptions> = {}) {
  const root = await tempDir('bundle');
  const codeDir = path.join(root, 'code');
  await writeFiles(codeDir, files);
  const outFile = path.join(root, 'bundle.cjs');
  // The bundle runs on this host in these tests, so the code is where the "sandbox" sees it.
  const result = await bundleHandler({ codeDir, handler, nodeMajor: 24, outFile, taskRoot: codeDir, ...opts });
  return { codeDir, outFile, result };
}

async function bundleError(files: Record<string, string>, handler: string): Promise<SnapshotBuildError> {
  try {
    await bundle(files, handler);
  } catch (err) {
    assert.ok(err instanceof SnapshotBuildError, String(err));
    return err;
  }
  throw new Error('bundling succeeded');
}

/** Run the bundled handler in this process, as plain CommonJS. */
async function call(outFile: string, exportPath: readonly string[], event: unknown = {}): Promise<unknown> {
  let fn: unknown = requireHere(outFile);
  for (const key of exportPath) fn = (fn as Record<string, unknown>)[key];
  return (fn as (e: unknown) => Promise<unknown>)(event);
}

describe('handler names', () => {
  test('are parsed like the Node runtime does', () => {
    assert.deepEqual(parseHandler('index.handler'), { moduleRoot: '', moduleName: 'index', exportPath: ['handler'] });
    assert.deepEqual(parseHandler('src/lib/app.api.v1.handler'), { moduleRoot: 'src/lib/', moduleName: 'app', exportPath: ['api', 'v1', 'handler'] });
    assert.throws(() => parseHandler('../escape.handler'), (e: unknown) => e instanceof SnapshotBuildError && e.errorType === 'Runtime.MalformedHandlerName');
    assert.throws(() => parseHandler('nodot'), (e: unknown) => e instanceof SnapshotBuildError && e.code === 'InitFailed');
  });
});

describe('per-file locations', () => {
  test('a declaration goes after the hashbang, comments and directives', () => {
    const src = "#!/usr/bin/env node\n/* license */\n// note\n'use strict';\n\"use asm\"\nconst x = 1;\n";
    const at = afterPrologue(src);
    assert.equal(src.slice(at), '\nconst x = 1;\n');
    assert.equal(afterPrologue('const a = 1;'), 0);
  });

  test('__dirname, __filename and import.meta are the file as the runtime sees it', () => {
    const cjs = rewriteLocation("'use strict';\nmodule.exports = __dirname;\n", '/var/task/lib/a.js');
    assert.equal(cjs, `'use strict';var __filename = "/var/task/lib/a.js", __dirname = "/var/task/lib";\nmodule.exports = __dirname;\n`);
    assert.equal(rewriteLocation('export const u = import.meta.url, d = import.meta.dirname;', '/var/task/m.mjs'), 'export const u = "file:///var/task/m.mjs", d = "/var/task";');
    // A file that declares its own __dirname keeps it.
    assert.equal(rewriteLocation('const __dirname = "x"; export default __dirname;', '/var/task/b.mjs'), undefined);
    assert.equal(rewriteLocation('module.exports = 1;', '/var/task/c.js'), undefined);
  });
});

describe('bundling', () => {
  test('a CommonJS handler in a subdirectory, with local modules, JSON, dependencies and files next to it', async () => {
    const { codeDir, outFile, result } = await bundle(
      {
        'lib/deep/file.js': `'use strict';
const fs = require('node:fs');
const path = require('path');
const { greet } = require('../util');
const data = require('./data.json');
const dep = require('dep');
const template = fs.readFileSync(path.join(__dirname, 'template.txt'), 'utf8').trim();
exports.fn = async (event) => ({ greeting: greet(event.name), answer: data.answer, dep: dep.name, template, file: __filename });
`,
        'lib/util.js': `exports.greet = (n) => 'hello ' + n;\n`,
        'lib/deep/data.json': `{ "answer": 42 }\n`,
        'lib/deep/template.txt': 'from a file next to the handler\n',
        'node_modules/dep/package.json': `{ "name": "dep", "main": "main.js" }\n`,
        'node_modules/dep/main.js': `exports.name = require('./package.json').name + ' in ' + require('path').basename(__dirname);\n`,
      },
      'lib/deep/file.fn',
    );
    assert.equal(result.taskFile, path.join(codeDir, 'lib/deep/file.js'));
    assert.deepEqual(result.exportPath, ['fn']);
    assert.ok(result.inputs >= 5, `inputs ${result.inputs}`);
    assert.deepEqual(result.externals, []);
    assert.deepEqual(await call(outFile, result.exportPath, { name: 'thaw' }), {
      greeting: 'hello thaw',
      answer: 42,
      dep: 'dep in dep',
      template: 'from a file next to the handler',
      file: path.join(codeDir, 'lib/deep/file.js'),
    });
  });

  test('an ES module handler (.mjs) with ESM and CommonJS dependencies and import.meta.url', async () => {
    const { codeDir, outFile, result } = await bundle(
      {
        'app.mjs': `import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import esm, { twice } from 'esm-dep';
import cjs from 'cjs-dep';
const here = fileURLToPath(import.meta.url);
const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'));
export const handler = async (event) => ({
  hash: createHash('sha256').update(String(event.x)).digest('hex').slice(0, 8),
  twice: twice(event.x), esm, cjs: cjs.kind, here, pkg: pkg.name,
});
`,
        'package.json': `{ "name": "esm-fn" }\n`,
        'node_modules/esm-dep/package.json': `{ "name": "esm-dep", "type": "module", "exports": "./index.js" }\n`,
        'node_modules/esm-dep/index.js': `export const twice = (x) => x * 2;\nexport default 'esm default';\n`,
        'node_modules/cjs-dep/package.json': `{ "name": "cjs-dep" }\n`,
        'node_modules/cjs-dep/index.js': `module.exports = { kind: 'cjs' };\n`,
      },
      'app.handler',
    );
    assert.equal(result.taskFile, path.join(codeDir, 'app.mjs'));
    assert.deepEqual(await call(outFile, result.exportPath, { x: 21 }), {
      hash: '6f4b6612',
      twice: 42,
      esm: 'esm default',
      cjs: 'cjs',
      here: path.join(codeDir, 'app.mjs'),
      pkg: 'esm-fn',
    });
  });

  test('a .js handler in a "type": "module" package', async () => {
    const { outFile, result } = await bundle(
      { 'package.json': '{ "type": "module" }\n', 'index.js': `export async function handler() { return { kind: 'type-module', url: import.meta.url.startsWith('file://') }; }\n` },
      'index.handler',
    );
    assert.deepEqual(await call(outFile, result.exportPath), { kind: 'type-module', url: true });
  });

  test('native addons stay external, at their path inside the sandbox', async () => {
    const { result } = await bundle(
      {
        'index.js': `const addon = require('./build/Release/addon.node');\nexports.handler = async () => addon.hello();\n`,
        'build/Release/addon.node': 'not really an ELF file',
      },
      'index.handler',
      { taskRoot: '/var/task' },
    );
    assert.deepEqual(result.externals, ['/var/task/build/Release/addon.node']);
  });

  test('modules that do not exist are left for run time, like a plain start would', async () => {
    const { outFile, result } = await bundle(
      {
        'index.js': `let optional = null;
try { optional = require('optional-dep'); } catch { optional = 'absent'; }
exports.handler = async () => ({ optional });
exports.never = () => require('never-installed');
`,
      },
      'index.handler',
    );
    assert.ok(result.externals.includes('never-installed'), JSON.stringify(result.externals));
    assert.deepEqual(await call(outFile, result.exportPath), { optional: 'absent' });
  });

  test('top-level await is refused with a reason the owner can act on', async () => {
    const err = await bundleError({ 'index.mjs': `const config = await Promise.resolve(1);\nexport const handler = async () => config;\n` }, 'index.handler');
    assert.equal(err.code, 'BundleFailed');
    assert.match(err.userMessage, /top-level await/);
    assert.match(err.userMessage, /index\.mjs:1/);
    assert.match(err.userMessage, /beforeCheckpoint hook/);
  });

  test('a syntax error names the file and line', async () => {
    const err = await bundleError({ 'index.js': `exports.handler = async () => {\n  return 1 +;\n};\n` }, 'index.handler');
    assert.equal(err.code, 'BundleFailed');
    assert.match(err.userMessage, /index\.js:2:\d+/);
  });

  test('a handler module that does not exist fails like Init would', async () => {
    const err = await bundleError({ 'other.js': 'exports.handler = 1;\n' }, 'index.handler');
    assert.equal(err.code, 'InitFailed');
    assert.equal(err.errorType, 'Runtime.ImportModuleError');
    assert.match(err.userMessage, /Cannot find module 'index'/);
  });

  test('minify shrinks the bundle and keeps function names', async () => {
    const files = { 'index.js': `function computeSomethingLong(alpha, beta) {\n  // a comment that minification drops\n  return alpha * beta;\n}\nexports.handler = async () => ({ name: computeSomethingLong.name, v: computeSomethingLong(6, 7) });\n` };
    const plain = await bundle(files, 'index.handler');
    const small = await bundle(files, 'index.handler', { minify: true });
    assert.ok(small.result.sizeBytes < plain.result.sizeBytes, `${small.result.sizeBytes} < ${plain.result.sizeBytes}`);
    assert.deepEqual(await call(small.outFile, small.result.exportPath), { name: 'computeSomethingLong', v: 42 });
    assert.match(await readFile(plain.outFile, 'utf8'), /computeSomethingLong/);
  });

  test('a source map is written on request', async () => {
    const { result } = await bundle({ 'index.js': 'exports.handler = async () => 1;\n' }, 'index.handler', { sourcemap: true });
    assert.ok(result.mapFile !== undefined);
    const map = JSON.parse(await readFile(result.mapFile, 'utf8')) as { sources: string[] };
    assert.ok(map.sources.some((s) => s.endsWith('index.js')));
    assert.ok(pathToFileURL(result.file).href.startsWith('file://'));
  });
});

/**
 * The second line behind the build sandbox: even run on the host, the bundler reads nothing outside the code
 * and layer directories, and its messages do not tell what exists there.
 */
describe('containment', () => {
  const outside = /outside the function's code and layers/;

  test('/proc/self/environ as text, an absolute path and a relative path out of the code are refused', async () => {
    const root = await tempDir('outside');
    const secret = path.join(root, 'secret.json');
    await writeFile(secret, JSON.stringify({ secret: 'host' }));
    for (const src of [
      `import env from '/proc/self/environ' with { type: 'text' };\nexport const handler = async () => env;\n`,
      `const s = require(${JSON.stringify(secret)});\nexports.handler = async () => s;\n`,
      `const s = require('../../../../../../../..${secret}');\nexports.handler = async () => s;\n`,
      `const s = require('file://${secret}');\nexports.handler = async () => s;\n`,
    ]) {
      const name = src.startsWith('import') ? 'index.mjs' : 'index.js';
      const err = await bundleError({ [name]: src }, 'index.handler');
      assert.equal(err.code, 'BundleFailed', err.message);
      assert.match(err.userMessage, outside);
      assert.ok(!err.userMessage.includes('"host"'));
    }
  });

  test('an existing and a missing path outside the code give the same answer', async () => {
    const root = await tempDir('oracle');
    const there = path.join(root, 'there.json');
    await writeFile(there, '{}');
    const msgs: string[] = [];
    for (const p of [there, path.join(root, 'not-there.json')]) {
      const spec = `../../../../../../../..${p}`;
      const err = await bundleError({ 'index.js': `require(${JSON.stringify(spec)});\nexports.handler = async () => 1;\n` }, 'index.handler');
      msgs.push(err.userMessage.replace(spec, '<spec>'));
    }
    assert.equal(msgs[0], msgs[1]);
    assert.match(msgs[0] ?? '', outside);
  });

  test('a symbolic link in the code that points out of it is refused, as a module and as the handler', async () => {
    const root = await tempDir('links');
    const secret = path.join(root, 'secret.js');
    await writeFile(secret, 'module.exports = "host secret";\n');
    const codeDir = path.join(root, 'code');
    await writeFiles(codeDir, { 'index.js': `const s = require('./lib.js');\nexports.handler = async () => s;\n` });
    await symlink(secret, path.join(codeDir, 'lib.js'));
    await symlink(secret, path.join(codeDir, 'entry.js'));
    const outFile = path.join(root, 'bundle.cjs');
    await assert.rejects(bundleHandler({ codeDir, handler: 'index.handler', nodeMajor: 24, outFile, taskRoot: codeDir }),
      (e: unknown) => e instanceof SnapshotBuildError && e.code === 'BundleFailed' && outside.test(e.userMessage) && !e.userMessage.includes(root));
    await assert.rejects(bundleHandler({ codeDir, handler: 'entry.handler', nodeMajor: 24, outFile, taskRoot: codeDir }),
      (e: unknown) => e instanceof SnapshotBuildError && e.errorType === 'Runtime.ImportModuleError' && !e.userMessage.includes(root));
  });

  test('a handler named by an absolute path outside the code is not found', async () => {
    const err = await bundleError({ 'index.js': 'exports.handler = async () => 1;\n' }, '/etc/passwd.handler');
    assert.equal(err.errorType, 'Runtime.ImportModuleError');
  });
});
