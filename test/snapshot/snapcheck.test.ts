import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { snapcheck, type SnapFinding } from '../../src/snapshot/snapcheck.js';

/** Repository root (this file runs from dist/test/snapshot). */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The real CLI, as a child process, from the repository root. */
function thaw(args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/thaw.js', ...args], { cwd: ROOT }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Each hazard on its own line; the comment names the rule, the line is where the call starts. */
const HAZARDS = `const crypto = require('node:crypto');
const { randomUUID: uuid4, randomBytes } = require('crypto');
const http = require('http');
const net = require('net');
const { spawn } = require('child_process');
const fs = require('fs');
const { v4 } = require('uuid');
const id = crypto.randomUUID();                 // 8  entropy-at-init error
const key = randomBytes(32);                    // 9  entropy-at-init error
const r = Math.random();                        // 10 entropy-at-init error
const u = uuid4();                              // 11 entropy-at-init error
const u2 = v4();                                // 12 entropy-at-init error
const started = Date.now();                     // 13 time-at-init warning
const bootedAt = new Date();                    // 14 time-at-init warning
const fixed = new Date(0);                      // 15 (has an argument: not flagged)
http.get('http://example.invalid/');            // 16 connection-at-init error
const sock = net.connect(5432, '127.0.0.1');    // 17 connection-at-init error
fetch('http://example.invalid/');               // 18 connection-at-init error
db.connect();                                   // 19 connection-at-init warning
setInterval(() => {}, 1000);                    // 20 handle-at-init error
setTimeout(() => {}, 10);                       // 21 handle-at-init warning
net.createServer().listen(0);                   // 22 handle-at-init error
fs.watch('.');                                  // 23 handle-at-init error
spawn('true');                                  // 24 handle-at-init error
(function () { globalThis.crypto.getRandomValues(new Uint8Array(4)); })(); // 25 entropy-at-init (IIFE)
class Cache { static { this.t = performance.now(); } }                     // 26 time-at-init (static block)
exports.handler = async () => ({ id, key, r, u, u2, started, bootedAt, fixed, sock });
`;

const EXPECTED: ReadonlyArray<readonly [number, string, 'error' | 'warning']> = [
  [8, 'entropy-at-init', 'error'],
  [9, 'entropy-at-init', 'error'],
  [10, 'entropy-at-init', 'error'],
  [11, 'entropy-at-init', 'error'],
  [12, 'entropy-at-init', 'error'],
  [13, 'time-at-init', 'warning'],
  [14, 'time-at-init', 'warning'],
  [16, 'connection-at-init', 'error'],
  [17, 'connection-at-init', 'error'],
  [18, 'connection-at-init', 'error'],
  [19, 'connection-at-init', 'warning'],
  [20, 'handle-at-init', 'error'],
  [21, 'handle-at-init', 'warning'],
  [22, 'handle-at-init', 'error'],
  [23, 'handle-at-init', 'error'],
  [24, 'handle-at-init', 'error'],
  [25, 'entropy-at-init', 'error'],
  [26, 'time-at-init', 'warning'],
];

/** The same calls, where they belong: in the handler, in methods, in callbacks that run later. */
const IN_HANDLER = `import crypto, { randomUUID } from 'node:crypto';
import * as net from 'node:net';
import { nanoid } from 'nanoid';
const snapstart = globalThis.thaw?.snapstart;
let id;
snapstart?.registerAfterRestore(() => { id = crypto.randomUUID(); });
class Client { connect() { return net.connect(1); } now = Date.now(); }
export const handler = async () => {
  const started = Date.now();
  const rid = randomUUID() + nanoid() + Math.random();
  await fetch('http://example.invalid/');
  setTimeout(() => {}, 10);
  setInterval(() => {}, 10);
  new Client().connect();
  return { id, rid, started, at: new Date() };
};
function helper() { return crypto.randomBytes(8); }
export { helper };
`;

/** An Init value refreshed by an afterRestore hook: not a hazard. */
const REFRESHED = `const crypto = require('crypto');
let instanceId = crypto.randomUUID();
globalThis.thaw?.snapstart.registerAfterRestore(() => { instanceId = crypto.randomUUID(); });
exports.handler = async () => instanceId;
`;

const CLEAN = `const path = require('path');
const table = Array.from({ length: 10 }, (_, i) => i * i);
exports.handler = async (event) => ({ table, file: path.join('/tmp', String(event.name)) });
`;

function summary(findings: readonly SnapFinding[]): Array<[number, string, string]> {
  return findings.map((f) => [f.line, f.rule, f.severity]);
}

describe('thaw snapcheck', () => {
  let work: string;
  let hazards: string;
  let handler: string;
  let clean: string;

  before(() => {
    work = mkdtempSync(path.join(tmpdir(), 'thaw-snapcheck-'));
    hazards = path.join(work, 'hazards');
    mkdirSync(path.join(hazards, 'lib'), { recursive: true });
    writeFileSync(path.join(hazards, 'index.js'), HAZARDS);
    writeFileSync(path.join(hazards, 'lib', 'refreshed.cjs'), REFRESHED);
    handler = path.join(work, 'handler');
    mkdirSync(handler);
    writeFileSync(path.join(handler, 'index.mjs'), IN_HANDLER);
    clean = path.join(work, 'clean');
    mkdirSync(path.join(clean, 'node_modules', 'pg'), { recursive: true });
    writeFileSync(path.join(clean, 'index.js'), CLEAN);
    // A dependency that connects when it loads: only scanned with --include-deps.
    writeFileSync(path.join(clean, 'node_modules', 'pg', 'index.js'), "require('net').connect(5432);\n");
  });

  after(() => rmSync(work, { recursive: true, force: true }));

  test('each hazard at top level is flagged with its rule, file, line and a fix', async () => {
    const { findings, files } = await snapcheck(hazards);
    assert.deepEqual(files, [path.join(hazards, 'index.js'), path.join(hazards, 'lib', 'refreshed.cjs')]);
    assert.deepEqual(summary(findings), EXPECTED.map((e) => [...e]));
    for (const f of findings) {
      assert.equal(f.file, path.join(hazards, 'index.js'));
      assert.ok(f.column >= 1);
      assert.ok(f.message.length > 0 && !f.message.includes('\n'));
      assert.ok(f.fix.length > 0 && !f.fix.includes('\n'));
    }
    const first = findings[0];
    assert.equal(first?.column, 12);
    assert.match(first?.message ?? '', /^crypto\.randomUUID\(\) runs during Init/);
    assert.match(first?.fix ?? '', /registerAfterRestore\(\(\) => \{ id = crypto\.randomUUID\(\); \}\)/);
  });

  test('the same calls inside the handler, methods and hooks are not flagged', async () => {
    assert.deepEqual((await snapcheck(handler)).findings, []);
  });

  test('a value refreshed in an afterRestore hook is not flagged, and a single file can be scanned', async () => {
    const file = path.join(hazards, 'lib', 'refreshed.cjs');
    assert.deepEqual(await snapcheck(file), { files: [file], findings: [] });
  });

  test('node_modules is skipped unless asked for', async () => {
    assert.deepEqual(await snapcheck(clean), { files: [path.join(clean, 'index.js')], findings: [] });
    const withDeps = await snapcheck(clean, { includeDeps: true });
    assert.deepEqual(summary(withDeps.findings), [[1, 'connection-at-init', 'error']]);
    assert.equal(withDeps.findings[0]?.file, path.join(clean, 'node_modules', 'pg', 'index.js'));
  });

  test('CLI --json: exit 1 with error findings, same findings as the module', async () => {
    const r = await thaw(['snapcheck', hazards, '--json']);
    assert.equal(r.code, 1, r.stderr);
    const out = JSON.parse(r.stdout) as { findings: SnapFinding[] };
    assert.deepEqual(Object.keys(out), ['findings']);
    assert.deepEqual(out.findings, [...(await snapcheck(hazards)).findings]);
  });

  test('CLI human output: file:line:col severity rule message, a fix line, a summary', async () => {
    const r = await thaw(['snapcheck', hazards]);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stdout.includes(`${path.join(hazards, 'index.js')}:8:12  error    entropy-at-init  crypto.randomUUID() runs during Init`), r.stdout);
    assert.match(r.stdout, /\n {4}fix: Generate it in the handler/);
    assert.match(r.stdout, /\n13 errors, 5 warnings in 2 files\.\n$/);
  });

  test('CLI: a clean function exits 0 with no findings; warnings alone exit 0', async () => {
    const r = await thaw(['snapcheck', clean, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { findings: [] });
    const warnOnly = path.join(work, 'warn.js');
    writeFileSync(warnOnly, 'const t = Date.now();\nexports.handler = async () => t;\n');
    const w = await thaw(['snapcheck', warnOnly, '--json']);
    assert.equal(w.code, 0, w.stderr);
    assert.equal((JSON.parse(w.stdout) as { findings: SnapFinding[] }).findings[0]?.rule, 'time-at-init');
    const h = await thaw(['snapcheck', clean]);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /^No snapshot hazards found in 1 file\.\n$/);
  });

  test('CLI usage errors exit 2 with one thaw: line', async () => {
    for (const args of [['snapcheck'], ['snapcheck', path.join(work, 'missing')], ['snapcheck', clean, '--bogus']]) {
      const r = await thaw(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /^thaw: [^\n]+\n$/);
      assert.equal(r.stdout, '');
    }
  });
});
